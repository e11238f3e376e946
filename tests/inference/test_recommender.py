"""The recommendation core on an index whose right answers are known, and its invariants on a random one."""

import numpy as np
import polars as pl
import pytest
import torch
from answers import assert_same_answers
from inference_support import MOVIE_IDS, PREFERENCES, SEEN, UNKNOWN_USER, title, write_known_index
from random_index import write_random_index

from two_tower_recsys.artifacts.store import load_index
from two_tower_recsys.errors import ArtifactError, ConfigError, RequestError
from two_tower_recsys.evaluation.evaluator import EvaluationTask, compute_ranks
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.retrieval.topk import uses_two_stages


@pytest.fixture(scope="module")
def known(known_index_dir) -> Recommender:
    return Recommender.from_artifacts(known_index_dir)


def triples(movie_ids, user_index=None, scores=None):
    if scores is None:
        scores = [PREFERENCES[user_index][MOVIE_IDS.index(m)] for m in movie_ids]
    return [(m, float(s), title(m)) for m, s in zip(movie_ids, scores, strict=True)]


def test_top_k_excludes_seen_movies_best_first(known):
    (answer,) = known.recommend([7], 3)
    assert answer.user_id == 7 and answer.k == 3 and not answer.fallback
    assert answer.recommendations == triples([20, 40, 50], user_index=0)  # 10 and 30 were seen


def test_exclude_none_includes_seen_movies(known):
    (answer,) = known.recommend([7], 3, exclude="none")
    assert answer.recommendations == triples([10, 20, 30], user_index=0)


def test_a_movie_rated_two_stars_is_never_served_by_default_but_evaluation_would_rank_it(known):
    """userId 3 rated movie 50 (their best unseen) 2 stars: excluded by default, not by positives."""
    (rated,) = known.recommend([3], 2)
    assert rated.recommendations == triples([40, 30], user_index=1)
    (positives,) = known.recommend([3], 2, exclude="positives")
    assert positives.recommendations == triples([50, 40], user_index=1)  # the evaluation protocol


def test_unknown_exclude_is_a_config_error(known):
    with pytest.raises(ConfigError, match="exclude must be one of rated, positives, none"):
        known.recommend([3], 2, exclude="seen")


def test_fewer_unseen_movies_than_k_returns_fewer_never_seen_or_minus_inf(known):
    (answer,) = known.recommend([11], 3)  # has seen 5 of the 6 movies
    assert answer.k == 3
    assert answer.recommendations == triples([60], user_index=2)


def test_k_above_the_catalogue_is_clamped(known):
    (answer,) = known.recommend([3], 1000, exclude="positives")
    assert answer.k == len(MOVIE_IDS)
    assert answer.recommendations == triples([50, 40, 30, 20, 10], user_index=1)  # 60 was seen


def test_unknown_user_gets_the_popularity_ranking_marked_as_fallback(known):
    (answer,) = known.recommend([UNKNOWN_USER], 4)
    assert answer.fallback and answer.k == 4
    # counts 9, 9, 9 tie: catalogue order; then 5
    assert answer.recommendations == triples([20, 30, 60, 10], scores=[9, 9, 9, 5])


def test_a_batch_answers_each_user_in_order_as_if_asked_alone(known):
    users = [11, UNKNOWN_USER, 7, 3, 7]
    batch = known.recommend(users, 2)
    assert [answer.user_id for answer in batch] == users
    assert batch == [known.recommend([user], 2)[0] for user in users]


def test_one_k_per_user(known):
    answers = known.recommend([7, 3], [1, 2])
    assert [len(answer.recommendations) for answer in answers] == [1, 2]


def test_scores_are_divided_by_the_temperature(tmp_path):
    recommender = Recommender.from_artifacts(write_known_index(tmp_path / "hot", temperature=0.5))
    (answer,) = recommender.recommend([7], 1)
    assert answer.recommendations == triples([20], scores=[10.0])


def test_bad_requests_raise_request_errors(known):
    with pytest.raises(RequestError, match="k must be a positive integer, got 0"):
        known.recommend([7], 0)
    with pytest.raises(RequestError, match="row 1: user_id must be an integer"):
        known.recommend([7, "3"], 2)
    assert known.recommend([], 3) == []


def test_missing_or_altered_artifacts_are_one_line_errors(known_index_dir, tmp_path):
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        Recommender.from_artifacts(tmp_path / "nothing")
    broken = write_known_index(tmp_path / "broken")
    torch.save(torch.zeros(3, 6), broken / "user_embeddings.pt")
    with pytest.raises(ArtifactError, match="user_embeddings.pt"):
        Recommender.from_artifacts(broken)


def test_recommendations_rank_first_in_the_evaluator(known_index_dir, known):
    """Same scorer, same seen-filter: the evaluator ranks the i-th recommendation at rank i."""
    index = load_index(known_index_dir)
    for user_index, user_id in enumerate([7, 3, 11]):
        (answer,) = known.recommend([user_id], len(MOVIE_IDS), exclude="positives")  # the protocol's
        items = [MOVIE_IDS.index(movie_id) for movie_id, _, _ in answer.recommendations]
        task = EvaluationTask(
            split="test",
            users=np.full(len(items), user_index, dtype=np.int64),
            targets=np.array(items, dtype=np.int64),
            history=pl.DataFrame({"user_idx": [], "item_idx": []}),
            seen=index.seen,
        )
        assert compute_ranks(index.scorer(), task, progress=False).tolist() == list(range(len(items)))
        assert not set(items) & set(SEEN[user_index])


def test_random_index_invariants(random_index_dir):
    recommender = Recommender.from_artifacts(random_index_dir, batch_size=7)  # several batches
    index = recommender.index
    users = [*range(1, 201), 0, 10_000]  # two unknown ids
    answers = recommender.recommend(users, 50)
    scores = index.scorer().score(torch.arange(len(index.user_ids)))
    for user_index, answer in enumerate(answers[:200]):
        movie_ids = [movie_id for movie_id, _, _ in answer.recommendations]
        items = np.searchsorted(index.item_ids, movie_ids)
        seen = set(index.rated.items_of(user_index).tolist())
        assert not answer.fallback and len(items) == min(50, index.n_items - len(seen))
        assert not seen & set(items.tolist())
        got = [score for _, score, _ in answer.recommendations]
        assert got == sorted(got, reverse=True) and all(np.isfinite(got))
        # exact top-k: nothing unseen left out scores above the last one returned
        unseen = np.setdiff1d(np.arange(index.n_items), list(seen))
        assert np.sort(scores[user_index, unseen].numpy())[::-1][: len(items)] == pytest.approx(got)
    assert [answer.fallback for answer in answers[200:]] == [True, True]
    singles = [recommender.recommend([user], 50)[0] for user in (1, 77, 200)]
    for single, batched in zip(singles, [answers[0], answers[76], answers[199]], strict=True):
        # float32 matrix products may differ in the last bit between batch shapes: same movies.
        assert [m for m, _, _ in single.recommendations] == [m for m, _, _ in batched.recommendations]
        assert [s for _, s, _ in single.recommendations] == pytest.approx(
            [s for _, s, _ in batched.recommendations], rel=1e-5
        )


def test_answers_are_the_top_items_rows_cut_before_the_first_excluded_movie(random_index_dir):
    """The answer building (triples per row) adds, drops and reorders nothing: each answer is
    its row of :meth:`top_items`, up to its own k, stopping at the first -inf (excluded) score."""
    recommender = Recommender.from_artifacts(random_index_dir)
    index = recommender.index
    users = np.arange(1, 201)
    ks = np.array([[1, 7, 50, 300, 1000][user % 5] for user in users.tolist()])  # 300: whole catalogue
    answers = recommender.recommend(users, ks)
    clamped = np.minimum(ks, index.n_items)
    values, items = recommender.top_items(users - 1, clamped, "rated")  # ids 1..200 are indices 0..199
    cut_short = 0
    for answer, k, row_values, row_items in zip(
        answers, clamped, values.tolist(), items.tolist(), strict=True
    ):
        kept = [
            (int(index.item_ids[item]), value, index.titles[item])
            for item, value in zip(row_items[:k], row_values[:k], strict=True)
        ]
        kept = kept[: next((i for i, (_, value, _) in enumerate(kept) if value == float("-inf")), k)]
        assert answer.k == k and answer.recommendations == kept
        cut_short += len(kept) < k
    assert cut_short == 80  # every k = 300 or 1000 (clamped to 300) row stops before the rated movies


@pytest.fixture(scope="module")
def exact(random_index_dir):
    return Recommender.from_artifacts(random_index_dir, batch_size=64)


@pytest.mark.parametrize("exclude", ["rated", "positives", "none"])
@pytest.mark.parametrize("index", ["pq", "hnsw"])
def test_approximate_answers_equal_the_exact_ones_never_excluded_k_honoured(
    random_index_dir, exact, index, exclude
):
    """300 movies at the defaults: the graph search is exhaustive, and the scan's candidates hold
    the exact top-k, so answers must match (up to summation order)."""
    approximate = Recommender.from_artifacts(random_index_dir, batch_size=64, index=index)
    users, k = list(range(1, 201)), [1, 10, 50, 300] * 50
    answers = approximate.recommend(users, k, exclude=exclude)
    assert_same_answers(answers, exact.recommend(users, k, exclude=exclude))


class MissingGraph:
    """A graph that finds only movies 0, 1 and 2 (-1 pads the rest): every user is left short."""

    def __init__(self, n_items):
        self.n_items = n_items

    def candidate_counts(self, k, n_hidden=0):
        return np.asarray(k) + n_hidden

    def search(self, queries, k, n_hidden=0):
        labels = np.full((len(queries), int(np.max(self.candidate_counts(k, n_hidden)))), -1, dtype=np.int64)
        labels[:, :3] = [0, 1, 2]
        return labels


def test_users_the_graph_leaves_short_fall_back_to_exact(exact, monkeypatch):
    index = exact.index
    short = Recommender(index, batch_size=64, ann=MissingGraph(index.n_items))
    users = list(range(1, 201))
    assert_same_answers(short.recommend(users, 20), exact.recommend(users, 20))
    monkeypatch.setattr("two_tower_recsys.inference.candidates.MAX_ANN_FETCH", 8)  # all users too heavy
    assert_same_answers(short.recommend(users, 5), exact.recommend(users, 5))


def test_an_unknown_index_kind_is_a_config_error(random_index_dir):
    with pytest.raises(ConfigError, match="index must be one of exact, pq, hnsw"):
        Recommender.from_artifacts(random_index_dir, index="ivf")


def test_batches_ranked_in_two_stages_and_chunks_answer_as_single_users_do(random_index_dir, monkeypatch):
    """k = 2 of 300 movies takes the two-stage top-k for batches; 16-user chunks split each batch."""
    monkeypatch.setattr("two_tower_recsys.retrieval.topk.SCORE_CHUNK_BYTES", 4 * 300 * 16)
    recommender = Recommender.from_artifacts(random_index_dir, batch_size=64)
    assert uses_two_stages(16, recommender.n_items, 2)
    users = list(range(1, 201))
    for batched, user in zip(recommender.recommend(users, 2), users, strict=True):
        assert_same_answers(recommender.recommend([user], 2), [batched], user)


def test_a_users_answer_is_the_same_alone_and_in_any_batch_up_to_summation_order(tmp_path):
    """The ML-20M width (64): BLAS sums a one-row product in another order than a batch's, and
    its kernels differ by processor, so scores agree within tests/answers.py's tolerance."""
    write_random_index(tmp_path, n_users=40, n_items=5_000, dim=64, mean_positives=20, seed=11)
    recommender = Recommender.from_artifacts(tmp_path)
    users = list(range(1, 41))
    alone = [recommender.recommend([user], 30)[0] for user in users]
    for size in (2, 3, 8, 40):
        batched = [
            answer
            for start in range(0, 40, size)
            for answer in recommender.recommend(users[start : start + size], 30)
        ]
        assert_same_answers(batched, alone, size)
