"""scripts/setup.sh, run for real with stand-ins for the system tools it calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_portaudio_found_early_in_a_long_library_list_is_not_installed_again(tmp_path):
    """ldconfig names PortAudio first, then keeps writing (as on a machine with many libraries): the check
    must still see it, not read ldconfig's SIGPIPE as "missing" and reinstall or warn. A Python that is
    too old stops the script right after the check, before it touches .venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    tool(bin_dir, "ldconfig", "echo '\tlibportaudio.so.2 (libc6,x86-64) => /usr/lib/libportaudio.so.2'\n"
                              "yes '\tlibother.so.1 (libc6,x86-64) => /usr/lib/libother.so.1' | head -n 200000\n")
    tool(bin_dir, "apt-get", f"echo \"$@\" >> {calls}\n")
    tool(bin_dir, "old-python", "[ \"$1\" = --version ] && echo 'Python 3.9.0'; exit 1\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "old-python")}
    for _ in range(5):
        proc = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1 and "Python 3.11 or newer is needed" in proc.stderr
        assert "libportaudio2" not in proc.stdout + proc.stderr
    assert not calls.exists()


def test_portaudio_missing_is_installed_as_root(tmp_path):
    """The same stand-ins without PortAudio in the list: apt-get is asked for it (root) or the user told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-get.calls"
    tool(bin_dir, "ldconfig", "echo '\tlibother.so.1 (libc6,x86-64) => /usr/lib/libother.so.1'\n")
    tool(bin_dir, "apt-get", f"echo \"$@\" >> {calls}\n")
    tool(bin_dir, "old-python", "[ \"$1\" = --version ] && echo 'Python 3.9.0'; exit 1\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "old-python")}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    if os.geteuid() == 0:
        assert "installing libportaudio2" in proc.stdout and "install -y -qq libportaudio2" in calls.read_text()
    else:
        assert "libportaudio2 is missing" in proc.stderr and not calls.exists()
