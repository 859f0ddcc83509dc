#!/usr/bin/env bash
# Set up occupancy on a fresh Debian machine with Python 3.11: the PortAudio system library (for the
# microphone), a virtual environment in .venv, and the package with everything: the training extra
# (PyTorch, for train/evaluate/bench/export and CUDA) and the test tools. Safe to re-run.
# A venue needs neither: `pip install .` alone counts, on ONNX Runtime (README, "Install at a venue").
set -euo pipefail
cd "$(dirname "$0")/.."

# The library list is read whole before it is searched: `ldconfig -p | grep -q` fails under pipefail when grep
# stops at the first match and ldconfig, still writing, dies of SIGPIPE (3 runs in 50 reinstalled PortAudio).
libraries=$(ldconfig -p 2>/dev/null || true)
if ! grep -q 'libportaudio\.so\.2' <<<"$libraries"; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing libportaudio2 (PortAudio, for microphone capture) with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libportaudio2 >/dev/null
    else
        echo "setup: libportaudio2 is missing and this is not root: run 'sudo apt-get install libportaudio2'" \
             "for microphone capture (files and the demo replay work without it)" >&2
    fi
fi

# The real servers the tests run against (skipped with a reason where missing): headless Chromium for the HTML
# report, PostgreSQL and Prometheus (with promtool) for the fleet. Installed only where missing, as root.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing ${missing[*]} (the servers the tests run against) with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: ${missing[*]} missing and this is not root: their tests will be skipped" >&2
    fi
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
    echo "setup: Python 3.11 or newer is needed, $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "setup: installing occupancy and its dependencies into .venv (first run takes a few minutes)"
if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[train,test]" >.venv/pip.log 2>&1; then
    grep -v "^WARNING: Location" .venv/pip.log | tail -n 20 >&2
    echo "setup: pip install failed (full log: .venv/pip.log)" >&2
    exit 1
fi
.venv/bin/python -c 'import occupancy, onnxruntime, soxr, torch, torchaudio' || { echo "setup: installed packages do not import" >&2; exit 1; }
echo "setup: ready (.venv/bin/occupancy)"
