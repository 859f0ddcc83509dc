"""`occupancy report --format html`: one self-contained page, rendered by a real headless Chromium at a
phone's width, which must make no request outside the page."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occupancy.engine.events import CountEvent
from occupancy.engine.store import finish_run, open_store, start_run, write_batch

REPO = Path(__file__).resolve().parents[2]
MONDAY = datetime(2026, 11, 16, tzinfo=UTC)
PHONE = (390, 2400)  # CSS pixels: an ordinary phone's width


def week_of_events() -> list[CountEvent]:
    """Six open days, 10-22 h, 20 minutes logged per hour (a window every 4 s), busier in the evening,
    with women/men and distinct-voices estimates; Wednesday 15 h has 2 minutes only (low coverage)."""
    rng = np.random.default_rng(0)
    events = []
    for day in range(1, 7):
        for hour in range(10, 22):
            minutes = 2 if (day, hour) == (2, 15) else 20
            busy = 0.3 + 0.5 * (hour >= 18)
            for second in range(0, minutes * 60, 4):
                start = MONDAY + timedelta(days=day, hours=hour, seconds=second)
                count = int(rng.binomial(3, busy))
                women = int(rng.integers(0, count + 1))
                probs = [0.02] * 4
                probs[count] = 0.94
                events.append(CountEvent(
                    start=start, end=start + timedelta(seconds=1), seconds=4.0, count=count, probabilities=tuple(probs),
                    smoothed=float(count), level_dbfs=-30.0, latency_ms=3.0, captured_at=0.0,
                    women=women, men=count - women, voices=int(1 + count + hour % 3),
                ))
    return events


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    db = open_store(folder / "week.db")
    run_id = start_run(db, source="microphone", device="USB", model="counter", compute="cpu", hop_s=4.0)
    write_batch(db, run_id, week_of_events(), {})
    finish_run(db, run_id)
    db.close()
    out = folder / "week.html"
    result = subprocess.run(
        [sys.executable, "-m", "occupancy.cli", "report", "--db", folder / "week.db", "--utc", "--format", "html",
         "--output", out, "--capacity-limit", "2"],
        cwd=folder, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the page went into the file
    return out


def test_the_page_holds_the_report_and_nothing_from_outside(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert '<meta name="viewport" content="width=device-width' in text
    for section in ("Busiest hours", "A typical week", "Day by day", "Weekdays", "Capacity alerts", "Longest gaps",
                    "Distinct voices by weekday and hour", "Women", "<svg"):
        assert section in text, section
    busiest = text.split('<ol class="busiest">', 1)[1].split("</ol>", 1)[0]
    assert busiest.count("<li>") == 5 and re.search(r"<li><b>\w{3} 2026-11-\d\d (18|19|20|21):00</b>", busiest)
    assert 'class="low"' in text  # Wednesday 15 h, 2 minutes: hatched, not called quiet
    # nothing is fetched: no address in a src, href, url() or @import; charts are inline
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.findall(r"url\(\s*['\"]?(?:https?:)?//|@import", text, re.I)
    assert "<script" not in text


def render_in_chromium(page: Path, folder: Path) -> tuple[Image.Image, set[str]]:
    """A screenshot of `page` at the phone's size, and every URL the page itself asked for (Chromium's
    network log; the browser's own requests, its update checks, have no origin and are left out)."""
    shot, netlog = folder / "phone.png", folder / "net.json"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={folder / 'profile'}",
         f"--window-size={PHONE[0]},{PHONE[1]}", f"--screenshot={shot}", f"--log-net-log={netlog}", page.as_uri()],
        env={**os.environ, "HOME": str(folder)}, capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file(), result.stderr
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    asked = {params["url"] for params in starts if "url" in params and params.get("initiator") != "not an origin"}
    return Image.open(shot).convert("L"), asked


needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="needs Debian's chromium (apt-get install chromium) to render the page")


@needs_chromium
def test_chromium_renders_it_at_a_phone_width_without_a_request_outside_it(page, tmp_path):
    image, asked = render_in_chromium(page, tmp_path)
    assert image.size == PHONE
    assert np.asarray(image)[:1200].std() > 20  # text and charts drawn, not a blank page
    assert not {u for u in asked if not u.startswith(("file:", "data:"))}, asked


@needs_chromium
def test_the_network_check_sees_a_page_that_fetches(tmp_path):
    """The check above can fail: a page without the policy that loads an image from elsewhere is caught."""
    fetching = tmp_path / "fetching.html"
    fetching.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/chart.png"></body></html>')
    (tmp_path / "shots").mkdir()
    _image, asked = render_in_chromium(fetching, tmp_path / "shots")
    assert "http://127.0.0.1:9/chart.png" in asked


def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(page, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "occupancy.cli", "report", "--db", page.with_name("week.db"), "--format", "html",
         "--output", tmp_path / "no-such-folder" / "week.html"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "week.html: cannot write the report" in result.stderr
    assert "Traceback" not in result.stderr
