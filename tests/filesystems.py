"""Real file systems for the tests that need one: a small ext4 disk on a loop device (one that fills
up, one whose power is cut) and a read-only view of a folder. They need root (mount) and, for the
disk, a free loop device and mkfs.ext4; without them the test is skipped, saying which is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*command: str) -> None:
    """Run a mount-related command; skip the test, with the command's own words, when it cannot be done."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"`{' '.join(command)}` failed here: {done.stderr.strip() or done.returncode}")


def _need(tool: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a file system")
    if not shutil.which(tool):
        pytest.skip(f"needs {tool}")


@contextmanager
def mounted(image: Path, at: Path) -> Iterator[Path]:
    """The ext4 file system in `image`, mounted read-write at `at` through a loop device."""
    _need("losetup")
    at.mkdir(exist_ok=True)
    _run("mount", "-o", "loop", str(image), str(at))
    try:
        yield at
    finally:
        subprocess.run(["umount", "--lazy", str(at)], check=True)  # lazy: a connection a failed test left open


@contextmanager
def ext4_disk(folder: Path, size_mb: int) -> Iterator[Path]:
    """A fresh ext4 disk of `size_mb` MB (no blocks kept back for root: full means full), mounted at
    folder/disk; its image is folder/disk.img."""
    _need("mkfs.ext4")
    image = folder / "disk.img"
    with open(image, "wb") as fh:
        fh.truncate(size_mb << 20)
    _run("mkfs.ext4", "-q", "-m", "0", str(image))
    with mounted(image, folder / "disk") as disk:
        yield disk


@contextmanager
def read_only_view(folder: Path) -> Iterator[Path]:
    """`folder` seen through a read-only bind mount (as an archive on read-only media)."""
    _need("mount")
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    _run("mount", "--bind", "-o", "ro", str(folder), str(view))
    try:
        yield view
    finally:
        subprocess.run(["umount", "--lazy", str(view)], check=True)
