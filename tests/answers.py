"""Comparing recommendation answers the way the product promises them, on any processor.

The promise: a user's answer is the same alone, in a batch, from the answer table or over HTTP up
to floating-point summation order. BLAS sums a row's 64 products in an order that depends on the
batch's shape and on the processor's kernels, so scores agree within ``tolerance(score)`` (1e-5
relative plus 1e-5 absolute), and the movies are the same except where scores lie that close:
two such movies may trade places, or one may replace the other at the cut.

Everything that involves no floating-point sum (ids, k, fallback, titles, the popularity
ranking, answers on integer-valued embeddings) is compared exactly by the callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-5


def tolerance(score: float) -> float:
    return RELATIVE_TOLERANCE * abs(score) + ABSOLUTE_TOLERANCE


def as_answer_dict(answer: Any) -> dict[str, Any]:
    """A UserRecommendations or its JSON form, with recommendations as (movieId, score, title)."""
    answer = answer.as_dict() if hasattr(answer, "as_dict") else dict(answer)
    if answer.get("unknown_history_items", 0) is None:  # a typed (Spark) row holds the field anyway
        del answer["unknown_history_items"]
    answer["recommendations"] = [
        (r["movieId"], r["score"], r["title"]) if isinstance(r, Mapping) else tuple(r)
        for r in answer["recommendations"]
    ]
    return answer


def assert_same_answer(got: Any, expected: Any, context: object = "") -> None:
    """``got`` is ``expected`` up to summation order (see the module docstring)."""
    got, expected = as_answer_dict(got), as_answer_dict(expected)
    got_list, expected_list = got.pop("recommendations"), expected.pop("recommendations")
    assert got == expected, context  # user_id, k, fallback, unknown_history_items: exact
    assert_same_recommendations(got_list, expected_list, context)


def assert_same_recommendations(
    got_list: Sequence[tuple], expected_list: Sequence[tuple], context: object = ""
) -> None:
    """Two best-first lists of (movieId, score[, title]) alike up to summation order."""
    got_list = [(*row, None)[:3] for row in got_list]
    expected_list = [(*row, None)[:3] for row in expected_list]
    assert len(got_list) == len(expected_list), context
    for recommendations in (got_list, expected_list):
        scores = [score for _, score, _ in recommendations]
        assert scores == sorted(scores, reverse=True), (context, "not best first")
        assert len({movie for movie, _, _ in recommendations}) == len(recommendations), context
    # The i-th best score moves by at most the largest change of any one score.
    for (_, got_score, _), (_, expected_score, _) in zip(got_list, expected_list, strict=True):
        assert abs(got_score - expected_score) <= tolerance(expected_score), (context, got_list)
    got_movies = {movie: (score, title) for movie, score, title in got_list}
    expected_movies = {movie: (score, title) for movie, score, title in expected_list}
    for movie in got_movies.keys() & expected_movies.keys():
        (got_score, got_title), (expected_score, expected_title) = got_movies[movie], expected_movies[movie]
        assert got_title == expected_title, context
        assert abs(got_score - expected_score) <= tolerance(expected_score), (context, movie)
    if got_list:  # a movie in one answer only must sit at the other's cut, within the tolerance
        cut = expected_list[-1][1]
        for movie in got_movies.keys() ^ expected_movies.keys():
            score = got_movies.get(movie, expected_movies.get(movie))[0]
            assert abs(score - cut) <= 2 * tolerance(cut), (context, movie, got_list, expected_list)


def assert_same_answers(got: Sequence[Any], expected: Sequence[Any], context: object = "") -> None:
    assert len(got) == len(expected), context
    for position, (one_got, one_expected) in enumerate(zip(got, expected, strict=True)):
        assert_same_answer(one_got, one_expected, (context, position))
