"""Fresh histories in requests: the user vector comes from the history sent, by the shipped tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from answers import assert_same_recommendations
from inference_support import SEQUENCE_MOVIES, SEQUENCE_SHAPE, SEQUENCE_USERS

from two_tower_recsys.artifacts.store import HISTORY_TOWER, copy_index, index_id, load_index
from two_tower_recsys.errors import RequestError
from two_tower_recsys.inference.fresh_histories import FreshHistories, IdLookup
from two_tower_recsys.inference.recommender import Recommender
from two_tower_recsys.retrieval.ann import HnswParams
from two_tower_recsys.retrieval.pq_scan import PqParams

SHAPE = SEQUENCE_SHAPE
N_USERS, N_ITEMS = SEQUENCE_USERS, SEQUENCE_MOVIES
UNKNOWN_MOVIE = 10_000


@pytest.fixture(scope="module")
def core(sequence_index_dir) -> Recommender:
    return Recommender.from_artifacts(sequence_index_dir)


def expected_top(core: Recommender, history: list[int], k: int, hidden_movies: set[int]) -> list[tuple]:
    """By hand: the tower over the last max_history known movies, every other movie scored."""
    index = core.index
    movie_to_item = {int(movie): item for item, movie in enumerate(index.item_ids)}
    items = [movie_to_item[movie] for movie in history if movie in movie_to_item][-SHAPE.max_history :]
    with torch.no_grad():
        vector = index.history_tower(torch.tensor([items]), torch.tensor([len(items)]))[0]
    scores = (index.item_embeddings @ vector / index.temperature).tolist()
    hidden = hidden_movies | set(history)
    ranked = sorted(
        (movie for movie in index.item_ids.tolist() if movie not in hidden),
        key=lambda movie: -scores[movie_to_item[movie]],
    )
    return [(movie, scores[movie_to_item[movie]]) for movie in ranked[:k]]


def rated_movies(core: Recommender, user_id: int) -> set[int]:
    user = int(np.flatnonzero(core.index.user_ids == user_id)[0])
    return {int(core.index.item_ids[item]) for item in core.index.rated.items_of(user).tolist()}


def pairs(answer) -> list[tuple]:
    return [(movie, score) for movie, score, _ in answer.recommendations]


def assert_pairs(got: list[tuple], expected: list[tuple]) -> None:
    assert_same_recommendations(got, expected)


def test_the_index_ships_the_tower_and_a_copy_verifies_it(sequence_index_dir, tmp_path):
    index = load_index(sequence_index_dir)
    assert index.history_tower is not None and index.history_tower.max_history == SHAPE.max_history
    assert index.manifest["history_tower"] == SHAPE.as_dict()
    copied = copy_index(sequence_index_dir, tmp_path / "copy")
    assert HISTORY_TOWER in copied["files"] and index_id(copied) == index_id(index.manifest)
    assert load_index(tmp_path / "copy").history_tower is not None


def test_an_unknown_user_is_answered_from_the_history_sent(core):
    history = [5, 17, 2, 40]
    [answer] = core.recommend([999], 7, histories=[history])
    assert answer.fallback is False and answer.unknown_history_items == 0
    assert_pairs(pairs(answer), expected_top(core, history, 7, set()))
    assert answer.as_dict()["unknown_history_items"] == 0


def test_a_known_users_history_replaces_the_stored_one_and_their_rated_movies_stay_hidden(core):
    history = [8, 9, 10]
    [with_history] = core.recommend([3], 10, histories=[history])
    [stored] = core.recommend([3], 10)
    assert_pairs(pairs(with_history), expected_top(core, history, 10, rated_movies(core, 3)))
    assert pairs(with_history) != pairs(stored)
    [positives_only] = core.recommend([3], 10, exclude="positives", histories=[history])
    seen = {int(core.index.item_ids[i]) for i in core.index.seen.items_of(2).tolist()}
    assert_pairs(pairs(positives_only), expected_top(core, history, 10, seen))
    [nothing_else] = core.recommend([3], 10, exclude="none", histories=[history])
    assert_pairs(pairs(nothing_else), expected_top(core, history, 10, set()))


def test_only_the_last_max_history_movies_are_read_but_all_are_hidden(core):
    history = list(range(1, 16))  # 15 movies; the tower reads the last 6
    [answer] = core.recommend([999], 20, histories=[history])
    assert_pairs(pairs(answer), expected_top(core, history, 20, set()))
    assert not {movie for movie, _ in pairs(answer)} & set(history)
    [recent] = core.recommend([999], 20, histories=[history[-SHAPE.max_history :]])
    recent_scores = dict(pairs(recent))
    for movie, score in pairs(answer):  # same vector: the same score for every movie both list
        if movie in recent_scores:
            assert score == pytest.approx(recent_scores[movie], abs=1e-6)


def test_unknown_movies_are_skipped_and_counted(core):
    [answer] = core.recommend([999], 5, histories=[[UNKNOWN_MOVIE, 12, -3, 30, UNKNOWN_MOVIE]])
    [clean] = core.recommend([999], 5, histories=[[12, 30]])
    assert answer.unknown_history_items == 3 and answer.fallback is False
    assert_pairs(pairs(answer), pairs(clean))


def test_a_history_without_a_known_movie_gets_the_popularity_fallback(core):
    [unknown_user, known_user, empty] = core.recommend(
        [999, 3, 998], 8, histories=[[UNKNOWN_MOVIE], [UNKNOWN_MOVIE, -1], []]
    )
    [popular] = core.recommend([999], 8)
    assert unknown_user.fallback and unknown_user.unknown_history_items == 1
    assert unknown_user.recommendations == popular.recommendations
    assert empty.fallback and empty.unknown_history_items == 0
    assert known_user.fallback and known_user.unknown_history_items == 2
    ranking = [movie for movie, _, _ in core.recommend([999], N_ITEMS)[0].recommendations]
    rated = rated_movies(core, 3)
    assert [movie for movie, _, _ in known_user.recommendations] == [m for m in ranking if m not in rated][:8]


def test_rows_with_and_without_a_history_keep_their_order_and_answers(core):
    user_ids, ks = [4, 999, 7, 998, 12], [3, 4, 5, 6, 7]
    histories = [None, [1, 2, 3], None, [UNKNOWN_MOVIE], [50, 51]]
    answers = core.recommend(user_ids, ks, histories=histories)
    assert [answer.user_id for answer in answers] == user_ids
    for answer, user_id, k, history in zip(answers, user_ids, ks, histories, strict=True):
        [alone] = core.recommend([user_id], k, histories=None if history is None else [history])
        assert (answer.k, answer.fallback, answer.unknown_history_items) == (
            alone.k,
            alone.fallback,
            alone.unknown_history_items,
        )
        assert_pairs(pairs(answer), pairs(alone))  # scores: a matrix product vs a vector product
    assert answers[0].unknown_history_items is None and "unknown_history_items" not in answers[0].as_dict()


def test_batches_of_histories_answer_as_one_at_a_time(sequence_index_dir, core):
    small_batches = Recommender.from_artifacts(sequence_index_dir, batch_size=3)
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, N_ITEMS + 1, rng.integers(1, 12)).tolist() for _ in range(10)]
    batched = small_batches.recommend(list(range(1, 11)), 6, histories=histories)
    for answer, user_id, history in zip(batched, range(1, 11), histories, strict=True):
        [alone] = core.recommend([user_id], 6, histories=[history])
        assert_pairs(pairs(answer), pairs(alone))


@pytest.mark.parametrize("params", [HnswParams(ef_search=64), PqParams()], ids=["hnsw", "pq"])
def test_the_approximate_index_answers_histories_like_the_exact_one(core, params):
    approximate = Recommender(core.index, ann=params.build(core.index.item_embeddings.numpy()))
    histories = [[1, 2, 3], [40, 41], [7]]
    for got, expected in zip(
        approximate.recommend([999, 3, 5], 10, histories=histories),
        core.recommend([999, 3, 5], 10, histories=histories),
        strict=True,
    ):
        assert_pairs(pairs(got), pairs(expected))


def test_an_id_tower_refuses_a_history_naming_the_reason(known_index_dir):
    core = Recommender.from_artifacts(known_index_dir)
    with pytest.raises(RequestError, match=r"history: .*ID embedding \(model.user_tower=id\)"):
        core.recommend([7], 3, histories=[[10, 20]])
    assert core.recommend([7], 3, histories=[None]) == core.recommend([7], 3)


@pytest.mark.parametrize(
    ("histories", "message"),
    [
        ("296,318", "history must be one list of movieIds per user"),
        ([[1, 2], [3]], "got 2 histories for 1 users"),
        ([296], "row 0: history must be a list of movieIds, got 296"),
        (["296"], 'row 0: history must be a list of movieIds, got "296"'),
        ([{"a": 1}], "row 0: history must be a list of movieIds"),
        ([[1, 2.5]], r"row 0: history\[1\] must be an integer movieId, got 2.5"),
        ([[1, "7"]], r"row 0: history\[1\] must be an integer movieId, got \"7\""),
        ([[True]], r"row 0: history\[0\] must be an integer movieId, got true"),
        ([[1, None]], r"row 0: history\[1\] must be an integer movieId, got null"),
        ([[[1, 2]]], r"row 0: history must be a list of movieIds, got \[\[1, 2\]\]"),
        ([[2**70]], r"row 0: history\[0\] must be an integer movieId|out of range"),
        ([list(range(10_001))], "row 0: history holds 10001 movies; at most 10000 are allowed"),
    ],
)
def test_bad_histories_are_refused_with_one_line(core, histories, message):
    with pytest.raises(RequestError, match=message):
        core.recommend([1], 3, histories=histories)


def test_fresh_histories_resolve_in_request_order():
    movies = IdLookup(np.array([30, 10, 20]))  # movie 30 is item 0
    fresh = FreshHistories.resolve(
        [np.array([10, 99, 30]), None, np.array([], dtype=np.int64), np.array([20, 20])], movies
    )
    assert fresh.rows.tolist() == [0, 2, 3]
    assert fresh.unknown.tolist() == [1, 0, 0] and fresh.known_counts.tolist() == [2, 0, 2]
    padded = fresh.padded(np.array([0, 2]), max_history=1)  # the most recent known movie of each
    assert padded.items[:, 0].tolist() == [0, 2] and padded.lengths.tolist() == [1, 1]
    rows, items = fresh.hidden(np.array([0, 2]))
    assert rows.tolist() == [0, 0, 1, 1] and items.tolist() == [1, 0, 2, 2]
