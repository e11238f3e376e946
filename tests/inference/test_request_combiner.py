"""RequestCombiner: concurrent calls answered together, each with its own answer or its own error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from two_tower_recsys.inference.request_combiner import RequestCombiner


class Squares:
    """answer_all that squares ints, refuses negative ones, and can be held at its first call."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, requests: list[int]) -> list[int]:
        self.batches.append(list(requests))
        self.running.set()
        self.release.wait(timeout=30)
        bad = [request for request in requests if request < 0]
        if bad:
            raise ValueError(f"negative: {bad}")
        return [request * request for request in requests]


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def queued_behind_a_running_call(requests: list[int]) -> tuple[Squares, RequestCombiner, list]:
    """Call 100 runs and is held; ``requests`` queue meanwhile; then everything is released."""
    squares = Squares()
    squares.release.clear()
    combiner = RequestCombiner(squares)
    with ThreadPoolExecutor(len(requests) + 1) as pool:
        first = pool.submit(combiner, 100)
        squares.running.wait(timeout=30)
        futures = [pool.submit(combiner, request) for request in requests]
        wait_until(lambda: len(combiner._queued) == len(requests))
        squares.release.set()
        outcomes = []
        for future in [first, *futures]:
            try:
                outcomes.append(future.result(timeout=30))
            except ValueError as exc:
                outcomes.append(exc)
    return squares, combiner, outcomes


def test_a_lone_call_runs_at_once_alone():
    squares = Squares()
    combiner = RequestCombiner(squares)
    assert combiner(7) == 49
    assert squares.batches == [[7]] and (combiner.calls, combiner.batches) == (1, 1)


def test_calls_that_queue_during_a_run_are_answered_in_one_call():
    squares, combiner, outcomes = queued_behind_a_running_call([1, 2, 3, 4, 5])
    assert outcomes == [10_000, 1, 4, 9, 16, 25]
    assert squares.batches[0] == [100]
    assert sorted(squares.batches[1]) == [1, 2, 3, 4, 5] and len(squares.batches) == 2
    assert (combiner.calls, combiner.batches) == (6, 2)


def test_a_failing_request_gets_its_own_error_and_the_others_their_answers():
    squares, combiner, outcomes = queued_behind_a_running_call([1, -2, 3])
    assert outcomes[0] == 10_000 and outcomes[1] == 1 and outcomes[3] == 9
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "negative: [-2]"
    # the combined call failed, then each of its requests ran alone
    assert sorted(squares.batches[1]) == [-2, 1, 3] and sorted(squares.batches[2:]) == [[-2], [1], [3]]
    assert (combiner.calls, combiner.batches) == (4, 2)


def test_a_lone_failing_call_raises_to_its_caller_and_the_combiner_goes_on():
    combiner = RequestCombiner(Squares())
    with pytest.raises(ValueError, match="negative"):
        combiner(-1)
    assert combiner(3) == 9


def test_many_threads_each_get_their_own_answer():
    combiner = RequestCombiner(Squares())
    requests = list(range(2_000))
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(combiner, requests))
    assert answers == [request * request for request in requests]
    assert combiner.calls == len(requests) and combiner.batches <= len(requests)
