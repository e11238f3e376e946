"""fit_two_tower, the real training entry point, watched from a Lightning callback."""

import dataclasses
import functools

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from loss_reference import candidate_cross_entropy, shared_candidates_not_offered
from support import TINY_FIT_MAX_PAIRS

from two_tower_recsys.training.fit import fit_two_tower
from two_tower_recsys.training.negatives import POOL_POPULARITY_EXPONENT

MAX_PAIRS = TINY_FIT_MAX_PAIRS  # what the tiny fixture (conftest.py) samples per epoch


class _TrainedPairs(L.Callback):
    """Records the (user, item) pairs of every training batch, per epoch."""

    def __init__(self):
        self.epochs: list[set[tuple[int, int]]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(set())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        users, items = batch
        self.epochs[-1].update(zip(users.tolist(), items.tolist(), strict=True))


def trained_pairs(tiny, tmp_path, seed: int) -> list[set[tuple[int, int]]]:
    settings, dataset = tiny
    recorder = _TrainedPairs()
    fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=seed,
        checkpoint_dir=tmp_path / f"checkpoints-{seed}-{len(list(tmp_path.iterdir()))}",
        callbacks=[recorder],
    )
    return recorder.epochs


def test_training_draws_a_fresh_sample_of_the_train_pairs_every_epoch(tiny, tmp_path):
    _, dataset = tiny
    train_pairs = set(
        zip(*(dataset.train.get_column(c).to_list() for c in ("user_idx", "item_idx")), strict=True)
    )
    assert len(train_pairs) > 4 * MAX_PAIRS  # so one epoch cannot see them all

    epochs = trained_pairs(tiny, tmp_path, seed=3)
    assert len(epochs) == 4
    assert all(len(sample) == MAX_PAIRS and sample <= train_pairs for sample in epochs)
    assert len({frozenset(sample) for sample in epochs}) == 4
    # Four independent draws cover n * (1 - (1 - 1000 / n) ** 4) pairs on average (one sample
    # repeated four times would cover 1000).
    expected = len(train_pairs) * (1 - (1 - MAX_PAIRS / len(train_pairs)) ** 4)
    assert len(set().union(*epochs)) > 0.95 * expected > 2.5 * MAX_PAIRS
    assert trained_pairs(tiny, tmp_path, seed=3) == epochs  # the same seed draws the same samples


class _EpochCounter(L.Callback):
    def __init__(self):
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(trainer.current_epoch)


def test_resuming_a_fit_that_stopped_early_trains_no_further(tiny, tmp_path):
    settings, dataset = tiny
    trainer_cfg = dataclasses.replace(settings.trainer, max_epochs=30, early_stopping_patience=1)
    fit = functools.partial(
        fit_two_tower,
        dataset,
        model_cfg=settings.model,
        trainer_cfg=trainer_cfg,
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=tmp_path,
    )
    first = fit()
    assert len(first.history) < 30  # it stopped early

    counter = _EpochCounter()
    resumed = fit(resume_from=tmp_path / "last.ckpt", callbacks=[counter])
    assert counter.epochs == []  # (the pipeline crashed after the fit: resume goes on to evaluate)
    assert resumed.best_epoch == first.best_epoch
    assert [record.metrics for record in resumed.history] == [record.metrics for record in first.history]

    patient = dataclasses.replace(trainer_cfg, early_stopping_patience=3)
    counter = _EpochCounter()
    fit(trainer_cfg=patient, resume_from=tmp_path / "last.ckpt", callbacks=[counter])
    assert counter.epochs[0] == len(first.history)  # more patience on resume: training goes on


class _SequenceLosses(L.Callback):
    """The loss Lightning backpropagates, beside the definition recomputed from the same batch."""

    def __init__(self):
        self.pairs: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def on_before_backward(self, trainer, pl_module, loss):
        inputs, targets, mask = self.batch
        hidden = {  # each kept target's earlier movies in its window
            (row, movie)
            for row, (sequence, position) in enumerate(torch.nonzero(mask).tolist())
            for movie in inputs[sequence, : position + 1].tolist()
        }
        with torch.no_grad():  # dropout is 0: the same user vectors as the training step's
            users = pl_module.net.user_tower.encode(inputs)[mask]
            if pl_module.model_config.negatives == "full":
                logits = users @ pl_module.net.item_tower.embed_all().T
                expected = candidate_cross_entropy(logits, targets[mask], hidden, label_smoothing=0.2)
            else:  # the step's targets, then the pool it drew: the correction over both
                negatives = pl_module.mixed_negatives
                candidates = torch.cat([targets[mask], negatives.draw(trainer.global_step)])
                correction = negatives.log_expected_draws(candidates, pl_module.log_q, len(users))
                logits = users @ pl_module.net.item_tower(candidates).T - correction
                not_offered = shared_candidates_not_offered(candidates, len(users), hidden)
                rows = torch.arange(len(users))
                # smoothing spread over 1 / expected draws: even over the catalogue, in expectation
                spread = torch.exp(-correction)
                expected = candidate_cross_entropy(logits, rows, not_offered, 0.2, smoothing_weights=spread)
        self.pairs.append((float(loss), float(expected)))


@pytest.mark.parametrize("negatives", ["full", "mixed"])
@pytest.mark.parametrize("item_features", [("id",), ("id", "genres", "year", "title")])
def test_lightning_trains_the_sequence_tower_on_the_smoothed_loss_without_earlier_positives(
    tiny, fit_three_batches, item_features, negatives
):
    """With content, the candidates and the history's movies are the id + content vectors."""
    settings, _ = tiny
    model = dataclasses.replace(
        settings.model,
        item_features=item_features,
        user_tower="sequence",
        negatives=negatives,
        sampled_negatives=300,
        l2_reg=0.0,
        max_history=8,
        dropout=0.0,
        label_smoothing=0.2,
        hide_earlier_positives=True,
    )
    losses = _SequenceLosses()
    fit_three_batches(model, losses, optimizer="adamw")
    assert len(losses.pairs) == 3
    for trained, expected in losses.pairs:
        assert trained == pytest.approx(expected, rel=1e-5)


class _IdTowerMixedLosses(L.Callback):
    """The mixed loss Lightning backpropagates for an id user tower, beside its definition: the
    batch's movies then the step's pool, each logit less log(B p + S q) from the training counts."""

    def __init__(self, target_counts: torch.Tensor):
        self.p = target_counts / target_counts.sum()
        weights = (target_counts + 1.0) ** POOL_POPULARITY_EXPONENT
        self.q = weights / weights.sum()
        self.pairs: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch = batch

    def on_before_backward(self, trainer, pl_module, loss):
        users, items = self.batch
        with torch.no_grad():
            pool = pl_module.mixed_negatives.draw(trainer.global_step)
            candidates = torch.cat([items, pool])
            expected_draws = len(items) * self.p[candidates] + len(pool) * self.q[candidates]
            logits = pl_module.net.user_tower(users) @ pl_module.net.item_tower(candidates).T
            logits = logits.double() - expected_draws.log()
            not_offered = shared_candidates_not_offered(candidates, len(items), set())
            rows = torch.arange(len(items))
            spread = 1.0 / expected_draws  # label smoothing: even over the catalogue, in expectation
            expected = candidate_cross_entropy(logits, rows, not_offered, 0.1, smoothing_weights=spread)
        self.pairs.append((float(loss), float(expected)))


def test_lightning_trains_the_id_user_tower_on_the_mixed_loss(tiny, fit_three_batches):
    settings, dataset = tiny
    model = dataclasses.replace(
        settings.model, negatives="mixed", sampled_negatives=300, l2_reg=0.0, label_smoothing=0.1
    )
    counts = torch.bincount(dataset.train.get_column("item_idx").to_torch(), minlength=dataset.n_items)
    losses = _IdTowerMixedLosses(counts.double())
    fit_three_batches(model, losses)
    assert len(losses.pairs) == 3
    for trained, expected in losses.pairs:
        assert trained == pytest.approx(expected, rel=1e-5)


class _CheckpointWatchingLogger(Logger):
    """A Lightning logger noting, for each epoch's metrics it gets, the epoch last.ckpt holds then."""

    def __init__(self, last_checkpoint):
        super().__init__()
        self.last_checkpoint = last_checkpoint
        self.arrivals: list[tuple[int, int | None]] = []  # (step, epoch in last.ckpt or None)

    name, version = "watching", 0

    def log_metrics(self, metrics, step=None):
        if {"train_loss", "val_recall_at_50"} & set(metrics):
            assert {"train_loss", "val_recall_at_50"} <= set(metrics)  # an epoch's metrics together
            saved = None
            if self.last_checkpoint.exists():
                saved = torch.load(self.last_checkpoint, map_location="cpu", weights_only=True)["epoch"]
            self.arrivals.append((step, saved))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_each_epochs_metrics_reach_the_loggers_before_its_checkpoint(tiny, tmp_path):
    """A run killed after last.ckpt is written resumes past that epoch: its train loss and
    validation must already be logged (Lightning itself logs epoch-end metrics after the
    checkpoint)."""
    settings, dataset = tiny
    watching = _CheckpointWatchingLogger(tmp_path / "checkpoints" / "last.ckpt")
    fit = fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=settings.trainer,
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=tmp_path / "checkpoints",
        loggers=[watching],
    )
    epochs = len(fit.history)
    assert [saved for _, saved in watching.arrivals] == [None, *range(epochs - 1)]
    steps = [step for step, _ in watching.arrivals]
    assert steps == sorted(steps) and len(set(steps)) == epochs  # one point per epoch, in order


class _FinalWeights(L.Callback):
    """Epochs trained, whether anything was validated, and the module's weights at the end of the
    last epoch (raw) and once training ended (after the average's callback, listed first, copied
    the average in)."""

    def __init__(self):
        self.epochs: list[int] = []
        self.validated = False
        self.raw: dict[str, torch.Tensor] = {}
        self.final: dict[str, torch.Tensor] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        self.validated |= any(name.startswith("val_") for name in trainer.callback_metrics)
        self.raw = {name: tensor.clone() for name, tensor in pl_module.state_dict().items()}

    def on_train_end(self, trainer, pl_module):
        self.final = {name: tensor.clone() for name, tensor in pl_module.state_dict().items()}


def test_a_fit_of_fixed_epochs_validates_nothing_and_keeps_its_last_averaged_weights(tiny, tmp_path):
    """What trainer.refit trains: no validation, no early stopping, no best checkpoint."""
    settings, dataset = tiny
    watch = _FinalWeights()
    fit = fit_two_tower(
        dataset,
        model_cfg=settings.model,
        trainer_cfg=dataclasses.replace(settings.trainer, ema_decay=0.9),  # max_epochs=4
        eval_cfg=settings.eval,
        seed=0,
        checkpoint_dir=tmp_path,
        callbacks=[watch],
        fixed_epochs=2,
    )
    assert watch.epochs == [0, 1] and not watch.validated and fit.history == []
    assert fit.best_epoch == 1 and fit.best_checkpoint == tmp_path / "last.ckpt"
    assert {path.name for path in tmp_path.iterdir()} == {"last.ckpt"}
    kept = fit.module.state_dict()
    assert kept.keys() == watch.final.keys()
    assert all(torch.equal(kept[name], watch.final[name]) for name in kept)  # the average at the end
    assert any(not torch.equal(kept[name], watch.raw[name]) for name in kept)  # not the raw weights
