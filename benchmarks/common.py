"""Shared by the benchmark scripts: the ML-20M-shaped zip, isolated timed runs, medians."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
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


def sequence_recipe_settings(
    *,
    negatives: str,
    sampled_negatives: int,
    max_history: int,
    n_blocks: int,
    label_smoothing: float,
    hide_earlier_positives: bool,
    batch_size: int,
    max_targets: int,
):
    """(ModelConfig, TrainerConfig) of the sequence recipe's optimizer with these loss and shape
    settings, for one epoch of at most ``max_targets`` target positions."""
    from two_tower_recsys.settings import ModelConfig, TrainerConfig

    model_cfg = ModelConfig(
        user_tower="sequence",
        negatives=negatives,
        sampled_negatives=sampled_negatives,
        l2_reg=0.0,
        max_history=max_history,
        n_blocks=n_blocks,
        label_smoothing=label_smoothing,
        hide_earlier_positives=hide_earlier_positives,
    )
    trainer_cfg = TrainerConfig(
        optimizer="adamw",
        weight_decay=0.1,
        lr=0.005,
        batch_size=batch_size,
        max_interactions=max_targets,
        max_epochs=1,
    )
    return model_cfg, trainer_cfg


def trainer_device_kwargs(accelerator: str) -> dict:
    """``L.Trainer`` keywords for ``--accelerator``: exactly the old ``accelerator="cpu"`` on the CPU."""
    return {"accelerator": "cpu"} if accelerator == "cpu" else {"accelerator": accelerator, "devices": 1}


def device_report_callback(warmup_batches: int = 20):
    """A Lightning callback recording where training ran, for ``--accelerator`` other than cpu.

    ``info`` gets the module's and the first batch's device and a steady-state timing from batch
    ``warmup_batches`` to the end of the epoch (synchronised), which leaves out start-up (moving the
    module, CUDA context and kernel warm-up).
    """
    import lightning as L
    import torch

    def synchronize(device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    class DeviceReport(L.Callback):
        def __init__(self) -> None:
            self.info: dict = {}
            self._started = None
            self._first = self._last = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                self.info["module_device"] = str(pl_module.device)
                self.info["parameter_devices"] = sorted({str(p.device) for p in pl_module.parameters()})
                self.info["batch_devices"] = sorted({str(t.device) for t in batch if torch.is_tensor(t)})
            if batch_idx == warmup_batches:
                synchronize(pl_module.device)
                self._started, self._first = time.perf_counter(), batch_idx

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._last = batch_idx

        def on_train_epoch_end(self, trainer, pl_module):
            synchronize(pl_module.device)
            if self._started is not None:
                self.info["steady_batches"] = self._last - self._first + 1
                self.info["steady_s"] = time.perf_counter() - self._started

    return DeviceReport()


def accelerator_summary(accelerator: str) -> dict:
    """torch / CUDA facts and peak device memory for the JSON line (not called on the CPU path)."""
    import torch

    info = {"accelerator": accelerator, "torch": torch.__version__}
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["cuda_device_name"] = torch.cuda.get_device_name(0)
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        info["max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        info["max_memory_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return info
