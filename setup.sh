#!/usr/bin/env bash
# One-command set-up on a fresh Debian/Ubuntu machine (root, or sudo): the Debian tools the tests
# talk to, then the project's virtual environment in .venv with every extra the tests use.
set -euo pipefail
cd "$(dirname "$0")"

# dcmtk (storescu, echoscu) and orthanc (a real PACS) for the DICOM node; iproute2 for the
# network namespace Orthanc runs in; openssl for a TLS test certificate; chromium renders the
# study report.
need=()
for pair in storescu:dcmtk Orthanc:orthanc ip:iproute2 openssl:openssl chromium:chromium; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi

# uv, not pip: torchvision needs the CUDA build of torch (it runs on CPU too).
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
uv venv -q --allow-existing .venv
uv pip install -q -e ".[train,dev,openvino,node,report,triton]"
# Bytecode now, not at first import: uv installs without it, and where PYTHONDONTWRITEBYTECODE is
# set (this VM) every `ctedge` start would compile pydicom, scipy and the rest from source
# (~0.4 s of a 19-slice study's ~2 s). Up-to-date files are skipped, so a rerun is quick.
.venv/bin/python -m compileall -q -j 0 .venv/lib ctedge >/dev/null || true  # a file that does not compile loads from source

# Triton (docs/triton.md): the real tritonserver + Python backend from the nvidia-pytriton wheel,
# unpacked outside .venv (PyTriton pins numpy<2).
[ -x .triton/pytriton/tritonserver/bin/tritonserver ] ||
    uv pip install -q --target .triton --no-deps nvidia-pytriton==0.7.0
