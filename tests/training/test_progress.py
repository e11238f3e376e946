"""The console of a real `two-tower train`: one compact bar per epoch, one short line per epoch."""

import re

import pytest
from support import TINY_SYNTHETIC, run_cli

pytestmark = pytest.mark.slow

SUMMARY = re.compile(
    r"^\d\d:\d\d:\d\d INFO epoch (\d+)/2: loss \d+\.\d{4}, val recall@50 0\.\d{4}( \(best\))?$"
)


def test_train_shows_one_bar_per_epoch_and_one_summary_line_per_epoch(tmp_path):
    overrides = [
        arg for arg in TINY_SYNTHETIC if not arg.startswith(("trainer.progress_bar", "trainer.max_epochs"))
    ]
    args = ["train", *overrides, "trainer.max_epochs=3", "trainer.progress_bar=true", "logging.enabled=false"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # What a terminal keeps: each \r-rewritten bar leaves its last state; log lines stand alone.
    lines = [part.strip() for line in result.stderr.splitlines() for part in line.split("\r") if part.strip()]
    summaries = [line for line in lines if SUMMARY.match(line)]
    assert [SUMMARY.match(line).group(1) for line in summaries] == ["0", "1", "2"]
    assert all(len(line) <= 80 for line in summaries)
    bars = [line for line in lines if line.startswith("epoch ") and "batch" in line]
    assert bars and all(re.match(r"epoch [0-2]/2: +\d+%", line) for line in bars)
    # Lightning's own bar (Rich or TQDM) prints every metric beside it: it must not be there.
    assert (
        "v_num" not in result.stderr and "val_recall_at_10" not in result.stderr and "━" not in result.stderr
    )
    assert not [line for line in lines if line.startswith(("epoch 0: train_loss", "Epoch "))]
