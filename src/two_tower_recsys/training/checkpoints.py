"""Checkpoint files that are never half-written.

Lightning's own save truncates the destination and writes into it (fsspec moves a temporary file
from the system temp folder, a copy when that is another filesystem), so a process killed while
saving can leave a corrupt ``last.ckpt`` behind: exactly the file a resume needs. Here the bytes go
to a temporary file beside the checkpoint, which is renamed over it once complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from two_tower_recsys.utils.fileio import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(Path(path)) as partial:
            torch.save(checkpoint, partial)
