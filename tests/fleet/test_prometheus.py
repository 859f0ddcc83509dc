"""Two boxes, one view: two real monitors with their own logs, scraped by a real Prometheus (started with
deploy/prometheus/'s config, rules and file-based targets) on loopback and then synced into one PostgreSQL
report. Also: the shipped rules pass promtool, and every Grafana panel's query runs on that Prometheus."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from occupancy.models import default_model_path
from tests.e2e.test_engine import CLI, HIDE_PORTAUDIO
from tests.engine.test_metrics import free_port

from .logs import box_config, child_env, occupancy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
BOXES = [("Central Library", "Reading room", 0), ("Harbour Cafe", "", 2)]  # venue, room, capacity_limit

needs_prometheus = pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("promtool"),
                                      reason="needs Prometheus and promtool: apt-get install prometheus")


@needs_prometheus
def test_the_shipped_rules_and_config_pass_promtool():
    for argv in (["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"], ["check", "config", "prometheus.yml"]):
        proc = subprocess.run(["promtool", *argv], cwd=DEPLOY, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(what: str, check, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:  # not listening yet
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def start_prometheus(folder: Path, targets: list[tuple[int, str, str]]) -> tuple[subprocess.Popen, int]:
    """Prometheus with the shipped config and rules (scraping every second), its targets one line per box."""
    for name in ("prometheus.yml", "rules.yml"):
        text = (DEPLOY / name).read_text()
        (folder / name).write_text(text.replace("scrape_interval: 15s", "scrape_interval: 1s")
                                   .replace("evaluation_interval: 15s", "evaluation_interval: 1s"))
    (folder / "targets").mkdir()
    lines = [f'- {{targets: ["127.0.0.1:{port}"], labels: {{venue: "{venue}", room: "{room}"}}}}' for port, venue, room in targets]
    (folder / "targets" / "boxes.yml").write_text("\n".join(lines) + "\n")
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return proc, port


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=60)[1] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1] or ""


@needs_prometheus
@pytest.mark.skipif(not default_model_path().exists(), reason="needs the shipped model to run monitors")
def test_two_monitors_appear_in_one_prometheus_query_and_one_postgresql_report(tmp_path, central):
    monitors, targets, configs = [], [], []
    try:
        for i, (venue, room, limit) in enumerate(BOXES):
            folder = tmp_path / f"box{i}"
            config = box_config(folder, venue, room)
            config.write_text(config.read_text().replace("monitor:\n", f"monitor:\n  capacity_limit: {limit}\n"))
            port = free_port()
            monitors.append(subprocess.Popen(  # no microphone here: the monitor counts its demo, live
                [sys.executable, "-c", HIDE_PORTAUDIO + CLI, "--config", str(config), "monitor", "--headless",
                 "--metrics-port", str(port)],
                cwd=folder, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            ))
            targets.append((port, venue, room))
            configs.append(config)
        prometheus, port = start_prometheus(tmp_path, targets)
        monitors.append(prometheus)

        gauges = wait_for("both boxes' gauges", lambda: (r := query(port, 'occupancy_smoothed_count{job="occupancy"}'))
                          and len(r) == 2 and r)
        assert {(g["metric"]["venue"], g["metric"].get("room", "")) for g in gauges}  # an empty label is none == {(v, r) for v, r, _ in BOXES}
        assert all(0 <= float(g["value"][1]) <= 3 for g in gauges)
        # the info metric joins the box's own settings (model, source) onto its series
        joined = query(port, 'occupancy_smoothed_count * on(instance) group_left(model, source) occupancy_monitor_info')
        assert {j["metric"]["source"] for j in joined} == {"demo"} and len(joined) == 2
        for info in query(port, "occupancy_monitor_info"):  # the box's own names, beside the targets file's
            assert info["metric"]["exported_venue"] == info["metric"]["venue"]
        assert [u["value"][1] for u in query(port, 'up{job="occupancy"}')] == ["1", "1"]
        limits = query(port, "occupancy_capacity_limit")  # served by the box with a limit only
        assert [(lim["metric"]["venue"], lim["value"][1]) for lim in limits] == [("Harbour Cafe", "2")]

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10) as response:
            rules = [r for g in json.load(response)["data"]["groups"] for r in g["rules"]]
        assert len(rules) == 4 and all(r["health"] == "ok" for r in rules), rules
        dashboard = json.loads((DEPLOY / "grafana-fleet.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                query(port, target["expr"].replace("$venue", ".*"))  # every panel's query is valid PromQL
    finally:
        errors = [stop(proc) for proc in monitors]
    assert all("Traceback" not in e for e in errors), errors

    for config in configs:
        proc = occupancy("--config", str(config), "sync", "--to", central)
        assert proc.returncode == 0, proc.stderr
    proc = occupancy("report", "--from", central, "--format", "json", "--utc", "--min-coverage", "0")
    assert proc.returncode == 0, proc.stderr
    rooms = json.loads(proc.stdout)["rooms"]
    assert {(r["venue"], r["room"]) for r in rooms} == {(v, r) for v, r, _ in BOXES}
    assert all(r["monitored_hours"] > 0 for r in rooms)
