#!/usr/bin/env python
"""The benchmark (`occupancy bench`): accuracy, speed, latency and memory, default model vs M5.

    .venv/bin/python scripts/benchmark.py --output docs/bench.json     # a few minutes
    .venv/bin/python scripts/benchmark.py --quick --output /tmp/b.json # seconds: checks it runs
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from occupancy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
