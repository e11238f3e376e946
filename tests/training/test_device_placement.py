"""Training steps make their tensors on the batch's device, so that training runs on a GPU.

No GPU here: while Lightning runs each training step (forward, loss, backward, optimizer step),
a torch function mode notes every tensor factory (``torch.arange``, ``torch.empty``...) that our
code calls without ``device=``. Such a tensor lands on the CPU, and on an H200 the first operation
mixing it with the batch's CUDA tensors failed (the in-batch loss's duplicate positions).
"""

import dataclasses
import sys
from pathlib import Path

import lightning as L
import pytest
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import two_tower_recsys

OUR_CODE = str(Path(two_tower_recsys.__file__).parent)


class _DeviceLessFactories(TorchFunctionMode):
    def __init__(self, found: list[str]):
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None:
            caller = sys._getframe(1)  # the Python line that called the factory
            if caller.f_code.co_filename.startswith(OUR_CODE):
                self.found.append(f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno} {func.__name__}")
        return func(*args, **kwargs)


class _WatchTrainingSteps(L.Callback):
    def __init__(self):
        self.steps = 0
        self.found: list[str] = []
        self._mode = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._mode = _DeviceLessFactories(self.found)
        self._mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._mode.__exit__(None, None, None)
        self.steps += 1


@pytest.mark.parametrize(
    "changes",
    [
        {"user_tower": "id", "negatives": "in_batch"},
        {"user_tower": "id", "negatives": "full"},
        {"user_tower": "sequence", "negatives": "in_batch", "max_history": 8},
        {"user_tower": "sequence", "negatives": "full", "max_history": 8, "hide_earlier_positives": True},
    ],
    ids=["id-in_batch", "id-full", "sequence-in_batch", "sequence-full-hide_earlier_positives"],
)
def test_every_tensor_a_training_step_makes_follows_the_batch(tiny, fit_three_batches, changes):
    watcher = _WatchTrainingSteps()
    fit_three_batches(dataclasses.replace(tiny[0].model, **changes), watcher)
    assert watcher.steps == 3
    assert watcher.found == []
