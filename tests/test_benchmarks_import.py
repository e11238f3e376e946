"""Every benchmark script still imports against today's package.

Benchmarks are rerun by hand, not in CI, so a function moved or renamed in the package can break
one silently (``bench_content.py`` imported ``seed_averaged_difference`` from the package after it
had moved to ``benchmarks/seed_average.py``). Importing a script runs its imports and definitions,
not its ``main`` (each guards it with ``if __name__ == "__main__"``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.slow  # imports torch, faiss, lightning and mlflow: ~15 s
def test_every_benchmark_script_imports() -> None:
    scripts = sorted(path.stem for path in BENCHMARKS.glob("*.py"))
    # One process for all: importing torch once keeps this under a few seconds.
    program = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "failed = []\n"
        f"for name in {scripts!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(scripts) > 10
