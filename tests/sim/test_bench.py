"""bench/sim_scale.py keeps working (a small run: 3 clusters)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sim_scale.py"


def test_scale_benchmark_runs_and_reports():
    out = subprocess.run([sys.executable, str(BENCH), "--clusters", "3", "--readiness-delay", "0.3"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"start-up: 3 clusters listening in [\d.]+ s", out.stdout)
    assert re.search(r"rollout: 3 rollouts at once .* ideal 0\.30 s", out.stdout)
    assert re.search(r"simulator CPU: [\d.]+ s", out.stdout)
    assert re.search(r"simulator memory: peak RSS \d+ MiB", out.stdout)
