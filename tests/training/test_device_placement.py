"""Everything a fit runs on the module's device makes its tensors there, so that training runs on a GPU.

No GPU here: from the start of the fit (the module is on its device by then) to its end, a torch
function mode notes every tensor factory (``torch.arange``, ``torch.full``...) that our code calls
without ``device=``: in the training steps (forward, loss, backward, optimizer step), in the
validation callback after each epoch and the gathering of its ranks across processes, and in
every other callback. Such a tensor lands on the CPU. On an H200 the first operation mixing one
with the batch's CUDA tensors failed (the in-batch loss's duplicate positions), and NCCL refuses
to all-gather a CPU tensor (the validation ranks under multi-GPU DDP).

Only the DataLoader's work is left out: batches are built on the CPU on purpose, and Lightning
moves each one to the device before the training step.
"""

import dataclasses
import sys
from pathlib import Path

import lightning as L
import pytest
import torch.utils.data
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import two_tower_recsys

OUR_CODE = str(Path(two_tower_recsys.__file__).parent)
DATA_LOADING = str(Path(torch.utils.data.__file__).parent)


def _loading_a_batch(frame) -> bool:
    """Whether ``frame`` runs inside the DataLoader (a sampler, dataset or collate of ours)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(DATA_LOADING):
            return True
        frame = frame.f_back
    return False


class _DeviceLessFactories(TorchFunctionMode):
    def __init__(self, found: list[str]):
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None:
            caller = sys._getframe(1)  # the Python line that called the factory
            if caller.f_code.co_filename.startswith(OUR_CODE) and not _loading_a_batch(caller):
                self.found.append(f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno} {func.__name__}")
        return func(*args, **kwargs)


class _WatchTheFit(L.Callback):
    """Watches from ``on_fit_start`` (the module is on its device) to ``on_fit_end``.

    fit_two_tower runs this callback after its own, so the window holds every training step, every
    built-in callback's epoch hooks (validation among them) and the checkpoints. It also counts
    our code's calls of the strategy's ``all_gather``: one process gathers too (Lightning's
    single-device gather returns its input), so the code DDP runs is watched here.
    """

    def __init__(self):
        self.steps = 0
        self.validated_epochs = 0
        self.gathers = 0
        self.found: list[str] = []
        self._mode = None

    def on_fit_start(self, trainer, pl_module):
        all_gather = trainer.strategy.all_gather

        def counted_all_gather(*args, **kwargs):
            self.gathers += sys._getframe(1).f_code.co_filename.startswith(OUR_CODE)
            return all_gather(*args, **kwargs)

        trainer.strategy.all_gather = counted_all_gather
        self._mode = _DeviceLessFactories(self.found)
        self._mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module):
        # Runs after the validation callback: its metric shows that validation ran in the window.
        self.validated_epochs += "val_recall_at_50" in trainer.callback_metrics

    def on_fit_end(self, trainer, pl_module):
        self._mode.__exit__(None, None, None)
        del trainer.strategy.all_gather  # the class's method again


@pytest.mark.parametrize(
    ("model_changes", "trainer_changes"),
    [
        ({"user_tower": "id", "negatives": "in_batch"}, {}),
        ({"user_tower": "id", "negatives": "full"}, {}),
        ({"user_tower": "sequence", "negatives": "in_batch", "max_history": 8}, {}),
        (
            {"user_tower": "sequence", "negatives": "full", "max_history": 8, "hide_earlier_positives": True},
            {},
        ),
        ({"user_tower": "sequence", "negatives": "in_batch", "max_history": 8}, {"ema_decay": 0.9}),
        (
            {"user_tower": "sequence", "negatives": "mixed", "sampled_negatives": 100, "max_history": 8},
            {},
        ),
    ],
    ids=[
        "id-in_batch",
        "id-full",
        "sequence-in_batch",
        "sequence-full-hide_earlier_positives",
        "sequence-in_batch-weight_average",  # validation scores the averaged copy
        "sequence-mixed",  # the pool is drawn on the module's device
    ],
)
def test_every_tensor_the_fit_makes_follows_the_module(
    tiny, fit_three_batches, model_changes, trainer_changes
):
    watcher = _WatchTheFit()
    fit_three_batches(dataclasses.replace(tiny[0].model, **model_changes), watcher, **trainer_changes)
    assert (watcher.steps, watcher.validated_epochs, watcher.gathers) == (3, 1, 1)
    assert watcher.found == []
