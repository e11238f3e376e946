"""Shared by the benchmark scripts: the ML-20M-shaped zip, isolated timed runs, medians."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ML20M_ZIP = RESULTS / "synthetic-20m.zip"


def peak_rss_mb() -> float:
    """This process's peak resident memory.

    /proc's VmHWM is reset by exec; getrusage's ru_maxrss is not (a child started by a big
    parent would report the parent's peak), so it is only the fallback off Linux.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_ml20m_shaped_zip(path: Path = ML20M_ZIP) -> Path:
    """Generate the synthetic ML-20M-shaped zip once (about 30 s) if it is not there yet."""
    if not path.exists():
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("bench_synth.py")), "--out", str(path)], check=True
        )
    return path


def run_isolated(script: Path, args: list[str]) -> dict:
    """Run ``script --child args`` in a fresh interpreter (so peak RSS is its own); parse its JSON line."""
    completed = subprocess.run(
        [sys.executable, str(script), "--child", *args], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{script.name} child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def median_summary(runs: list[dict], keys: list[str]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in keys}
