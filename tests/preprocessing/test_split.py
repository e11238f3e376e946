import polars as pl
import pytest

from two_tower_recsys.errors import DataError
from two_tower_recsys.preprocessing.split import FilterParams, _positives_and_kept_rows, build_splits


def ratings_frame(rows):
    return pl.DataFrame(
        rows,
        schema={
            "userId": pl.Int64,
            "movieId": pl.Int64,
            "rating": pl.Float32,
            "timestamp": pl.Int64,
        },
        orient="row",
    )


def original_pairs(splits, name):
    frame = splits.frames()[name]
    return sorted(
        (int(splits.user_ids[u]), int(splits.item_ids[i]))
        for u, i in zip(frame["user_idx"].to_list(), frame["item_idx"].to_list(), strict=True)
    )


def select_positives(ratings, params):
    """The positives that pass the count filters: what build_splits goes on to split."""
    positives, kept_rows = _positives_and_kept_rows(ratings, params)
    return positives if kept_rows is None else positives.take(kept_rows)


def original_users(positives):
    return sorted(set(positives.user_ids[positives.user_codes].tolist()))


def original_movies(positives):
    return sorted(set(positives.movie_ids[positives.movie_codes].tolist()))


NO_FILTER = FilterParams(rating_threshold=4.0, min_user_interactions=1, min_item_interactions=1)


def with_catalogue_user(rows, movies, user=999):
    """Add a user who has every movie in train (their own newest two are movies 9998, 9999)."""
    extra = [(user, m, 5.0, 0) for m in movies] + [(user, 9998, 5.0, 1), (user, 9999, 5.0, 2)]
    return rows + extra


def without(pairs, user=999):
    return [pair for pair in pairs if pair[0] != user]


def test_newest_positive_is_test_and_the_one_before_is_validation():
    rows = [
        (1, 10, 5.0, 100),
        (1, 11, 4.0, 300),  # newest -> test
        (1, 12, 4.5, 200),  # second newest -> val
        (1, 13, 3.5, 400),  # not a positive: ignored although newest
        (1, 14, 4.0, 50),
        (2, 10, 4.0, 10),
        (2, 12, 4.0, 20),
        (2, 14, 4.0, 30),
        (2, 11, 4.0, 40),
    ]
    splits = build_splits(ratings_frame(with_catalogue_user(rows, [10, 11, 12, 13, 14])), NO_FILTER)
    assert without(original_pairs(splits, "test")) == [(1, 11), (2, 11)]
    assert without(original_pairs(splits, "val")) == [(1, 12), (2, 14)]
    assert without(original_pairs(splits, "train")) == [(1, 10), (1, 14), (2, 10), (2, 12)]


def test_equal_timestamps_are_ordered_by_movie_id():
    rows = [
        (1, 30, 5.0, 7),
        (1, 10, 5.0, 7),
        (1, 20, 5.0, 7),
        (2, 10, 5.0, 1),
        (2, 20, 5.0, 2),
        (2, 30, 5.0, 3),
    ]
    splits = build_splits(ratings_frame(with_catalogue_user(rows, [10, 20, 30])), NO_FILTER)
    assert (1, 30) in original_pairs(splits, "test")
    assert (1, 20) in original_pairs(splits, "val")


def test_users_with_fewer_than_three_positives_stay_in_train():
    rows = [(1, 10, 5.0, 1), (1, 11, 5.0, 2), (2, 10, 5.0, 1), (2, 11, 5.0, 2), (2, 12, 5.0, 3)]
    splits = build_splits(ratings_frame(with_catalogue_user(rows, [10, 11, 12])), NO_FILTER)
    assert without(original_pairs(splits, "train")) == [(1, 10), (1, 11), (2, 10)]
    assert without(original_pairs(splits, "val")) == [(2, 11)]
    assert without(original_pairs(splits, "test")) == [(2, 12)]


def test_held_out_movies_missing_from_train_are_dropped():
    # movie 99 is only ever a newest positive: it cannot be scored, so its test rows go
    rows = [(u, m, 5.0, t) for u in (1, 2) for t, m in enumerate((10, 11, 12))] + [(1, 99, 5.0, 50)]
    splits = build_splits(ratings_frame(with_catalogue_user(rows, [10, 11, 12])), NO_FILTER)
    assert 99 not in splits.item_ids.tolist()
    assert without(original_pairs(splits, "test")) == [(2, 12)]  # (1, 99) dropped
    assert without(original_pairs(splits, "val")) == [(1, 12), (2, 11)]


def test_filters_count_positives_before_filtering():
    params = FilterParams(rating_threshold=4.0, min_user_interactions=3, min_item_interactions=2)
    rows = [
        (1, 10, 5.0, 1), (1, 11, 5.0, 2), (1, 12, 5.0, 3),  # user 1: 3 positives, kept
        (2, 10, 5.0, 1), (2, 11, 5.0, 2), (2, 13, 1.0, 3),  # user 2: 2 positives, dropped
        (3, 12, 4.0, 1), (3, 11, 4.0, 2), (3, 10, 4.0, 3),  # user 3: kept
    ]  # fmt: skip
    positives = select_positives(ratings_frame(rows), params)
    # movie 13 has no positive; movies 10, 11 keep counting user 2's positives (one pass)
    assert original_users(positives) == [1, 3]
    assert original_movies(positives) == [10, 11, 12]


def test_one_pass_filter_keeps_a_movie_whose_count_relied_on_a_dropped_user():
    params = FilterParams(rating_threshold=4.0, min_user_interactions=2, min_item_interactions=2)
    rows = [
        (1, 10, 5.0, 1),
        (1, 11, 5.0, 2),
        (2, 12, 5.0, 1),
        (3, 12, 5.0, 1),
        (3, 10, 5.0, 2),
        (1, 12, 5.0, 3),
    ]
    # user 2 has 1 positive (dropped); movie 12 counted 3 positives before filtering: kept
    positives = select_positives(ratings_frame(rows), params)
    assert 2 not in original_users(positives)
    assert 12 in original_movies(positives)


def test_repeated_ratings_keep_one_row():
    rows = [(1, 10, 5.0, 1), (1, 10, 4.0, 9), (1, 11, 5.0, 2), (1, 12, 5.0, 3)]
    positives = select_positives(ratings_frame(rows), NO_FILTER)
    movie_10 = positives.movie_ids[positives.movie_codes] == 10
    assert positives.timestamps[movie_10].tolist() == [9]
    assert positives.ratings[movie_10].tolist() == [4.0]


def test_indices_are_contiguous_and_ordered_by_original_id():
    rows = [(u, m, 5.0, m) for u in (7, 3, 5) for m in (40, 20, 30, 10)]
    splits = build_splits(ratings_frame(rows), NO_FILTER)
    assert splits.user_ids.tolist() == [3, 5, 7]
    assert splits.item_ids.tolist() == [10, 20]  # 30, 40 are held out for every user
    assert splits.train["user_idx"].dtype == pl.Int32


def test_thresholds_that_leave_nothing_raise_a_clear_error():
    rows = [(1, 10, 3.0, 1), (1, 11, 3.5, 2)]
    with pytest.raises(DataError, match="no positives left after filtering.*rating_threshold=4.0"):
        build_splits(ratings_frame(rows), NO_FILTER)


def test_large_and_negative_ids_and_timestamps_take_the_general_path():
    big = 10**15
    rows = [(u, m, 5.0, t) for u in (-5, big) for t, m in enumerate((big, -7, 3), start=-10)]
    rows += [(7, m, 5.0, 0) for m in (big, -7, 3, 11, 12)]
    splits = build_splits(ratings_frame(rows), NO_FILTER)
    assert splits.user_ids.tolist() == [-5, 7, big]
    assert without(original_pairs(splits, "test"), user=7) == [(-5, 3), (big, 3)]
    assert without(original_pairs(splits, "val"), user=7) == [(-5, -7), (big, -7)]


def test_matches_a_straightforward_reference_on_random_data():
    import numpy as np

    rng = np.random.default_rng(5)
    n = 3000
    frame = ratings_frame(
        list(
            zip(
                rng.integers(1, 60, n).tolist(),
                rng.integers(1, 80, n).tolist(),
                (rng.integers(1, 11, n) / 2).tolist(),
                rng.integers(0, 50, n).tolist(),  # many equal timestamps
                strict=True,
            )
        )
    )
    params = FilterParams(rating_threshold=3.0, min_user_interactions=3, min_item_interactions=2)
    splits = build_splits(frame, params)
    # reference: plain Python over dicts
    latest = {}
    for user, movie, rating, ts in frame.rows():
        if rating >= 3.0 and ((user, movie) not in latest or ts >= latest[(user, movie)][0]):
            latest[(user, movie)] = (ts, rating)
    users, movies = {}, {}
    for user, movie in latest:
        users[user] = users.get(user, 0) + 1
        movies[movie] = movies.get(movie, 0) + 1
    kept = {p: v for p, v in latest.items() if users[p[0]] >= 3 and movies[p[1]] >= 2}
    by_user = {}
    for (user, movie), (ts, _) in kept.items():
        by_user.setdefault(user, []).append((ts, movie))
    expected = {"train": set(), "val": set(), "test": set()}
    for user, items in by_user.items():
        items.sort()
        for position, (_, movie) in enumerate(items):
            from_end = len(items) - 1 - position
            split = "train" if len(items) < 3 or from_end > 1 else ("test" if from_end == 0 else "val")
            expected[split].add((user, movie))
    train_movies = {movie for _, movie in expected["train"]}
    for split in ("val", "test"):
        expected[split] = {pair for pair in expected[split] if pair[1] in train_movies}
    for split in ("train", "val", "test"):
        assert set(original_pairs(splits, split)) == expected[split]
        assert len(original_pairs(splits, split)) == len(expected[split])
