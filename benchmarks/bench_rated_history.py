"""Experiment (issue 18 part 2, validation only): the sequence tower reading every rating, with the
rating as an input; targets stay the positives.

    .venv/bin/python benchmarks/bench_rated_history.py --zip ../shared/data/ml-latest-small.zip \
        --seeds 0,1,2 --towers sequence --out DIR --id-override experiment=sequence

Runs bench_tower_comparison in-process with the library patched: each history row holds
``item + n_items * level`` (level = rating x 2, 1..10) and the tower adds a learned rating
embedding to each movie's vector; training windows hold every rating before the validation
movie and mask the targets that are not positives; hidden earlier positives are the window's
earlier positives. Train the "id" column (the recipe, unpatched) with bench_tower_comparison
itself into the same --out, then this one with --towers sequence (a separate --out per variant:
the kept ranks' digest does not see the patch). ``PROTO_POSITIVES_ONLY=1``: the positives only, as
today, each with its rating as an input; with ``PROTO_INPUT=gap PROTO_POSITIVE_LEVEL=0`` the input
is the time since the previous movie of the history (8 buckets, 0 s to over a year) instead;
with ``PROTO_INPUT=request-time PROTO_POSITIVES_ONLY=1 PROTO_POSITIVE_LEVEL=0`` each position's
input carries the quarter-year of the moment the tower is asked for the next movie (the next
row's time; after the last row, the held-out movie's time, or the data's last for serving);
``PROTO_ITEM_ERA=1`` adds to each movie's vector a learned vector of the quarter of its first
training positive.
A harness for a measurement, not product code: the variants lost on validation (docs/model.md,
"Further ahead"), so nothing of it is in the library.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tower_comparison

from two_tower_recsys.data.movielens import read_movielens_zip
from two_tower_recsys.models.components import sequence_tower as sequence_module
from two_tower_recsys.models.components import towers as towers_module
from two_tower_recsys.models.components import user_encoders
from two_tower_recsys.pipelines import trained_scorers
from two_tower_recsys.preprocessing import histories as histories_module
from two_tower_recsys.preprocessing.rated import index_of
from two_tower_recsys.preprocessing.split import VAL
from two_tower_recsys.training import fit as fit_module
from two_tower_recsys.training import module as module_module
from two_tower_recsys.training import sequences as sequences_module

REQUEST_TIME = os.environ.get("PROTO_INPUT") == "request-time"
QUARTER_S = 91 * 86_400 + 6 * 3600  # a quarter of a year
FIRST_QUARTER_TS = 788_918_400  # 1995-01-01, before MovieLens' first rating
QUARTERS = 100  # 1995 to 2019; later requests share the last
LEVELS = 1 + QUARTERS if REQUEST_TIME else 11  # 0: no rating given
POSITIVE_LEVEL = int(os.environ.get("PROTO_POSITIVE_LEVEL", "8"))  # rating >= 4
CACHE: dict = {}


def _rated_frame(dataset) -> pl.DataFrame:
    """Every rating of an indexed user on an indexed movie: user_idx, item_idx, code, key (global order)."""
    if "frame" in CACHE:
        return CACHE["frame"]
    ratings = read_movielens_zip(Path(os.environ["PROTO_ZIP"])).ratings
    users = index_of(ratings.get_column("userId").to_numpy(), dataset.user_ids)
    items = index_of(ratings.get_column("movieId").to_numpy(), dataset.item_ids)
    level = np.rint(ratings.get_column("rating").to_numpy() * 2).astype(np.int64).clip(1, 10)
    keep = (users >= 0) & (items >= 0)
    if os.environ.get("PROTO_POSITIVES_ONLY"):
        keep &= level >= 8  # rating >= 4, the default threshold
    frame = pl.DataFrame(
        {
            "user_idx": users[keep].astype(np.int64),
            "item_idx": items[keep].astype(np.int64),
            "timestamp": ratings.get_column("timestamp").to_numpy()[keep].astype(np.int64),
            "level": level[keep],
        }
    ).sort(["user_idx", "timestamp", "item_idx"])
    if os.environ.get("PROTO_INPUT") == "gap":
        # the time since the user's previous rating in the history instead of the rating
        gap = pl.col("timestamp").diff().over("user_idx")
        bounds = [0, 60, 3600, 86_400, 7 * 86_400, 30 * 86_400, 365 * 86_400]
        bucket = pl.lit(1, dtype=pl.Int64)
        for i, bound in enumerate(bounds):
            bucket = pl.when(gap > bound).then(i + 2).otherwise(bucket)
        frame = frame.with_columns(level=pl.when(gap.is_null()).then(10).otherwise(bucket).cast(pl.Int64))
    n_items = dataset.n_items
    frame = frame.with_columns(
        code=pl.col("item_idx") + n_items * pl.col("level"), key=pl.int_range(pl.len(), dtype=pl.Int64)
    )
    CACHE["frame"] = frame
    CACHE["n_items"] = n_items
    return frame


def _with_request_time(frame: pl.DataFrame, last_request: pl.Expr) -> pl.DataFrame:
    """Each row's level: the quarter of the *next* row's time (the moment the tower is asked what
    comes next), the last row's ``last_request`` (the held-out movie's time, or now)."""
    next_ts = pl.col("timestamp").shift(-1).over("user_idx").fill_null(last_request)
    quarter = ((next_ts - FIRST_QUARTER_TS) // QUARTER_S).clip(0, QUARTERS - 1) + 1
    frame = frame.with_columns(level=quarter.cast(pl.Int64))
    return frame.with_columns(code=pl.col("item_idx") + CACHE["n_items"] * pl.col("level"))


def _before(dataset, split: str) -> pl.DataFrame:
    """Ratings strictly before each user's ``split`` movie in (timestamp, movieId) order."""
    frame = _rated_frame(dataset)
    held = dataset.split(split).select(
        "user_idx", pl.col("item_idx").alias("held_item"), pl.col("timestamp").alias("held_ts")
    )
    held = held.with_columns(pl.col("user_idx").cast(pl.Int64), pl.col("held_item").cast(pl.Int64))
    joined = frame.join(held, on="user_idx", how="left")
    earlier = (pl.col("timestamp") < pl.col("held_ts")) | (
        (pl.col("timestamp") == pl.col("held_ts")) & (pl.col("item_idx") < pl.col("held_item"))
    )
    before = joined.filter(pl.col("held_ts").is_null() | earlier).sort("key")
    if REQUEST_TIME:
        before = _with_request_time(before, pl.col("held_ts").fill_null(pl.col("timestamp").max()))
    return before


def rated_histories_for(dataset, split: str, max_length: int):
    frame = _rated_frame(dataset) if split == histories_module.SERVING else _before(dataset, split)
    if REQUEST_TIME and split == histories_module.SERVING:  # asked now: the data's last moment
        frame = _with_request_time(frame, pl.lit(frame.get_column("timestamp").max()))
    rows = frame.get_column("user_idx").to_numpy()
    codes = frame.get_column("code").to_numpy()
    return histories_module.most_recent(rows, codes, dataset.n_users, max_length)


def rated_training_windows(dataset, max_inputs: int):
    frame = _before(dataset, VAL).select(
        "user_idx", pl.col("code").alias("item_idx"), pl.col("key").alias("timestamp")
    )
    return histories_module.training_windows(frame, dataset.n_users, max_inputs)


def _decode(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n_items = CACHE["n_items"]
    return codes % n_items, codes // n_items


def rated_sequence_training_batch(tower, batch):
    inputs, targets, mask = batch
    states = tower.encode(inputs)
    items, level = _decode(targets)
    keep = mask & (level >= POSITIVE_LEVEL)
    return states[keep], items[keep]


def rated_earlier_positives(batch):
    inputs, targets, mask = batch
    _, target_level = _decode(targets)
    keep = mask & (target_level >= POSITIVE_LEVEL)
    sequence, position = torch.nonzero(keep, as_tuple=True)
    columns = torch.arange(inputs.shape[1])
    input_items, input_level = _decode(inputs)
    earlier = (columns.unsqueeze(0) <= position.unsqueeze(1)) & (input_level[sequence] >= POSITIVE_LEVEL)
    target = torch.arange(len(sequence)).unsqueeze(1).expand_as(earlier)
    return target[earlier], input_items[sequence][earlier]


def rated_target_counts(histories, n_items):
    positions = torch.arange(histories.items.shape[1]).unsqueeze(0)
    is_target = (positions >= 1) & (positions < histories.lengths.unsqueeze(1))
    items, level = _decode(histories.items[is_target])
    return np.bincount(items[level >= POSITIVE_LEVEL].numpy(), minlength=n_items)


class RatedSequenceTower(sequence_module.SequenceTower):
    def __init__(self, item_embedding, **kwargs):
        super().__init__(item_embedding, **kwargs)
        self.rating_levels = nn.Embedding(LEVELS, self.dim)
        nn.init.normal_(self.rating_levels.weight, std=float(self.positions.weight.detach().std()))

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        items, level = _decode(history)
        length = history.shape[1]
        positions = self.positions.weight[:length].unsqueeze(0)
        movies = self.item_embedding(items.flatten()).unflatten(0, history.shape)
        x = self.input_dropout(movies + positions + self.rating_levels(level))
        for block in self.blocks:
            x = block(x)
        return self.output_norm(x)


class EraIdTower(towers_module.IdEmbeddingTower):
    """A movie's vector: its id's plus a learned vector of the quarter-year of its first training
    positive (0: none), so that a request's quarter (on the user side) meets it in the dot product.
    Histories still read the id table alone."""

    def __init__(self, size: int, dim: int, **kwargs):
        super().__init__(size, dim, **kwargs)
        self.eras = nn.Embedding(1 + QUARTERS, dim)
        nn.init.normal_(self.eras.weight, std=kwargs.get("init_std", 0.1))
        self.register_buffer("era_of", torch.as_tensor(CACHE["era_of"]), persistent=False)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices) + self.eras(self.era_of[indices])

    def embed_all(self, batch_size: int = 65_536) -> torch.Tensor:
        return self(torch.arange(self.size, device=self.era_of.device))


def _first_train_quarters(dataset) -> np.ndarray:
    first = dataset.train.group_by("item_idx").agg(pl.col("timestamp").min())
    quarter = ((first.get_column("timestamp").to_numpy() - FIRST_QUARTER_TS) // QUARTER_S).clip(
        0, QUARTERS - 1
    )
    era = np.zeros(dataset.n_items, dtype=np.int64)
    era[first.get_column("item_idx").to_numpy()] = quarter + 1
    return era


def patch() -> None:
    """Swap the library's history, window and tower pieces for the rated ones (this process only)."""
    original_sequence_training = sequences_module.sequence_training

    def sequence_training(dataset, model_cfg, trainer_cfg, seed):
        _rated_frame(dataset)
        CACHE["era_of"] = _first_train_quarters(dataset)
        windows = rated_training_windows(dataset, model_cfg.max_history)
        positions = int((windows.lengths - 1).clamp(min=0).sum())
        positives = int(rated_target_counts(windows, dataset.n_items).sum())
        # batch_size counts target positions: keep as many positive targets per step as the recipe
        scaled = replace(trainer_cfg, batch_size=round(trainer_cfg.batch_size * positions / positives))
        sequences_module.training_windows = lambda *_: windows
        sequences_module.target_counts = rated_target_counts
        print(
            f"windows {len(windows.lengths)}, positions {positions}, positive targets {positives}", flush=True
        )
        return original_sequence_training(dataset, model_cfg, scaled, seed)

    fit_module.sequence_training = sequence_training  # the name as fit imported it
    if os.environ.get("PROTO_ITEM_ERA"):  # the eras are read when the windows are built
        module_module.build_tower = lambda kind, size, dim, **kwargs: EraIdTower(size, dim, **kwargs)
    sequences_module.histories_for = rated_histories_for
    trained_scorers.histories_for = rated_histories_for
    module_module.sequence_training_batch = rated_sequence_training_batch
    module_module.earlier_positives = rated_earlier_positives
    user_encoders.USER_ENCODERS["sequence"] = RatedSequenceTower


if __name__ == "__main__":
    args = sys.argv[1:]
    os.environ.setdefault("PROTO_ZIP", str(Path(args[args.index("--zip") + 1]).resolve()))
    patch()
    bench_tower_comparison.main()
