import subprocess
import sys


def test_evaluation_modules_do_not_import_torch():
    code = ("import sys; import ctedge.cli, ctedge.train.evaluation_cli, ctedge.train.studies, "
            "ctedge.train.readers, ctedge.export.compact, ctedge.train.run; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
