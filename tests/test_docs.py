"""The README a venue reads, and the documentation site (docs/, mkdocs.yml) that holds the rest: the
site builds with `mkdocs build --strict`, so a broken link or a page missing from the files fails here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_LIMIT = 12 * 1024
SETUP_COMMANDS = [
    "bash scripts/setup.sh && .venv/bin/occupancy monitor",
    "bash scripts/setup.sh && .venv/bin/python -m pytest",
]


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="needs MkDocs (the test extra: pip install '.[test]')")
    pytest.importorskip("material", reason="needs mkdocs-material (the test extra: pip install '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", root / "mkdocs.yml", "--site-dir", site],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly(tmp_path):
    result = mkdocs_build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in ("index.html", "microphone/index.html", "configuration/index.html", "log/index.html",
                 "counter/index.html", "speed/index.html", "training/index.html", "development/index.html",
                 "research/voices/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # the configuration reference includes config.yaml itself, so it cannot drift from it
    assert "flush_interval_s" in (tmp_path / "site" / "configuration/index.html").read_text(encoding="utf-8")


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "docs", copy / "docs")
    for name in ("mkdocs.yml", "config.yaml"):
        shutil.copyfile(REPO / name, copy / name)
    page = copy / "docs" / "microphone.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [the missing page](no-such-page.md).\n", encoding="utf-8")
    result = mkdocs_build(copy, tmp_path / "site")
    assert result.returncode != 0 and "no-such-page.md" in result.stderr


def test_the_readme_is_the_venues_guide():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_LIMIT
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == SETUP_COMMANDS
    first_screen = "\n".join(text.splitlines()[:30])
    assert "speaking at once" in first_screen and "not people" in first_screen
    for heading in ("## Install at a venue", "## Placing the microphone", "## Running as a service",
                    "## Reading the report", "## Privacy", "## Errors", "## Accuracy"):
        assert heading in text, heading
    assert "sudo " not in text.replace("put `sudo` before", "")  # a root-only box has none


def test_every_file_the_readme_links_exists():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if not t.startswith(("http://", "https://")) and not (REPO / t).exists()]
    assert not missing, missing
