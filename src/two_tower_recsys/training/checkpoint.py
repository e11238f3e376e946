"""Training checkpoints: written whole, read back safely and across config changes.

Three promises:

- **Never half-written** (:class:`AtomicCheckpointIO`): Lightning's own save truncates the
  destination and writes into it, so a process killed while saving could leave a corrupt
  ``last.ckpt`` behind, exactly the file a resume needs. Here the bytes go to a temporary file
  beside the checkpoint, renamed over it once complete.

- **Nothing is unpickled but tensors and plain values** (``torch.load(..., weights_only=True)``):
  exporting a checkpoint someone sent you cannot run code hidden in it.
- **A checkpoint outlives the settings it was written with.** Its saved hyper-parameters are read
  leniently: a key the settings gained since takes its default, a key they lost is dropped with a
  warning. Lightning's ``load_from_checkpoint`` would instead pass them to the strict settings
  parser, so adding a config key would make every earlier checkpoint unreadable.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from two_tower_recsys.errors import ArtifactError, ConfigError
from two_tower_recsys.settings import ModelConfig, TrainerConfig
from two_tower_recsys.training.module import TwoTowerModule
from two_tower_recsys.utils.fileio import atomic_path

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(Path(path)) as partial:
            torch.save(checkpoint, partial)


def load_two_tower_checkpoint(path: Path) -> TwoTowerModule:
    """The module saved in the Lightning checkpoint ``path``, on CPU (one-line ArtifactError)."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    try:
        hparams = checkpoint["hyper_parameters"]
        n_users, n_items = int(hparams["n_users"]), int(hparams["n_items"])
        model = known_fields(ModelConfig, hparams.get("model", {}), f"{path}: model")
        optimizer = known_fields(TrainerConfig, hparams.get("optimizer", {}), f"{path}: trainer")
        state = checkpoint["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a two-tower checkpoint (no {exc})") from None
    try:
        module = TwoTowerModule(n_users, n_items, model, optimizer, None, hparams.get("content_vocabulary"))
    except ConfigError as exc:
        raise ArtifactError(f"{path}: its saved settings are invalid today: {exc}") from None
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not fit the saved settings ({first_line(exc)})") from None
    return module.eval()


def read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load`` that refuses any pickled object other than tensors and plain containers."""
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        globals_ = [line for line in lines if "global" in line.lower()]
        if globals_:
            raise ArtifactError(
                f"{path} holds pickled objects other than tensors and plain values; refusing to load "
                f"it ({globals_[0][:200]})"
            ) from None
        # torch's message: a paragraph about weights_only, the reason, then a documentation link.
        reason = lines[-2] if len(lines) >= 3 else lines[-1] if lines else "unpickling failed"
        raise ArtifactError(f"{path} is not a readable checkpoint ({reason[:200]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable checkpoint ({first_line(exc)[:200]})") from None
    if not isinstance(checkpoint, dict):
        raise ArtifactError(f"{path} is not a Lightning checkpoint (a {type(checkpoint).__name__})")
    return checkpoint


def known_fields(cls: type, saved: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``saved`` without the keys ``cls`` no longer has (warned about); missing keys take defaults later."""
    if not isinstance(saved, Mapping):
        raise TypeError(f"mapping in {where}")
    names = {field.name for field in dataclasses.fields(cls)}
    obsolete = sorted(set(saved) - names)
    if obsolete:
        log.warning("%s: ignoring saved setting(s) no longer known: %s", where, ", ".join(obsolete))
    return {key: value for key, value in saved.items() if key in names}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
