"""Decode workers that survive a crash: the dead worker's item is reported, a fresh worker
takes its place, every other item still comes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crashing_decoder import prepare_or_segfault, square_or_die

from ctedge.workers import SliceWorkers, WorkerDied, WorkerError, start_method


def run_all(workers: SliceWorkers, values: list[int]) -> list:
    """Every value through the workers; results and WorkerDied records in arrival order."""
    out, submitted = [], 0
    while submitted < len(values) or workers.busy:
        while submitted < len(values) and workers.idle:
            workers.submit(submitted, values[submitted])
            submitted += 1
        out += workers.collect()
    return out


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_worker_killed_by_sigsegv_is_replaced_and_its_item_reported(method):
    values = [2, 3, -11, 4, 5, 6]
    with SliceWorkers(2, square_or_die, method=method) as workers:
        out = run_all(workers, values)
        assert workers.deaths == 1
        assert workers.idle == 2  # the replacement is there
    died = [v for v in out if isinstance(v, WorkerDied)]
    assert len(died) == 1 and died[0].index == 2 and died[0].exitcode == -11
    assert "SIGSEGV" in died[0].why
    assert sorted(v for v in out if not isinstance(v, WorkerDied)) == [4, 9, 16, 25, 36]


def test_a_worker_that_exits_is_reported_with_its_exit_code():
    with SliceWorkers(1, square_or_die, method="fork") as workers:
        out = run_all(workers, [-3, -3, 7])
        assert workers.deaths == 2
    died = sorted((v.index, v.exitcode) for v in out if isinstance(v, WorkerDied))
    assert died == [(0, 3), (1, 3)]
    assert 49 in out


def test_an_exception_that_does_not_pickle_comes_back_as_text_and_the_worker_lives():
    with SliceWorkers(1, square_or_die, method="fork") as workers:
        workers.submit(0, -1)
        with pytest.raises(WorkerError, match="Panic: decoder panicked"):
            workers.collect()
        workers.submit(1, 8)
        assert workers.collect() == [64]
        assert workers.deaths == 0


def test_a_worker_stuck_past_the_time_limit_is_stopped_and_replaced():
    # The limit is wall time: generous enough that the normal items never reach it even on
    # an overloaded shared box, where starting a worker has taken seconds.
    with SliceWorkers(2, square_or_die, method="fork", timeout_s=5) as workers:
        out = run_all(workers, [-2, 3, 4])
        assert workers.deaths == 1
    (died,) = [v for v in out if isinstance(v, WorkerDied)]
    assert died.index == 0 and died.timed_out == 5 and "over 5 s" in died.why
    assert sorted(v for v in out if not isinstance(v, WorkerDied)) == [9, 16]


def test_workers_do_not_outlive_a_killed_main_process(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from crashing_decoder import square_or_die\n"
        "from ctedge.workers import SliceWorkers\n"
        "w = SliceWorkers(2, square_or_die, method='fork')\n"
        "w.submit(0, -2)\n"  # one worker busy (hanging), one idle
        "print(' '.join(str(x.process.pid) for x in [*w._idle, *w._busy.values()]), flush=True)\n"
        "time.sleep(3600)\n"
    )
    main = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in main.stdout.readline().split()]
    assert len(pids) == 2
    main.send_signal(signal.SIGKILL)
    main.wait()
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _running(p)]
        time.sleep(0.05)
    assert not alive, f"workers {alive} outlived their main process"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def test_fork_is_used_only_without_other_python_threads(monkeypatch):
    import threading

    # Other tests may leave library threads behind, so the thread count is set here.
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert start_method() == "fork"
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert start_method() == "forkserver"


def test_classify_survives_a_decoder_crash_on_one_slice(tmp_path, ct_factory, tiny_model,
                                                          monkeypatch, capsys):
    from test_cli import CHEST_SPACING_MM, chest_phantom

    import ctedge.pipeline
    from ctedge.cli import main

    folder = tmp_path / "study"
    ct_factory.make_series(folder, [0.0, 2.0, 4.0, 6.0, 8.0], pixels=chest_phantom(), size=512,
                           spacing=CHEST_SPACING_MM)
    victim = sorted(folder.iterdir())[2]
    victim.rename(victim.with_name("segv-" + victim.name))
    monkeypatch.setattr(ctedge.pipeline, "prepare_slice", prepare_or_segfault)

    code = main(["classify", str(folder), "--model", str(tiny_model), "--format", "json",
                 "--workers", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    reasons = [s["skip_reason"] for s in result["slices"]]
    crashed = [r for r in reasons if r and "crashed" in r]
    assert len(crashed) == 1 and "SIGSEGV" in crashed[0] and "segv-" in crashed[0]
    assert result["study"]["slices_classified"] == 4
    assert result["decision"]["label"] != "indeterminate"
