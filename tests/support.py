"""Helpers shared by the tests: tiny MovieLens zips, free ports, real server processes, the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

# ../shared/data beside the checkout; .ci/run points at it from its clean clone.
SHARED_DATA = Path(
    os.environ.get("TWO_TOWER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
SHARED_SMALL_ZIP = SHARED_DATA / "ml-latest-small.zip"

Rating = tuple[int, int, float, int]  # userId, movieId, rating, timestamp


def write_movielens_zip(
    path: Path,
    ratings: Iterable[Rating],
    movies: Iterable[tuple[int, str, str]] | None = None,
    folder: str = "ml-test",
    ratings_header: str = "userId,movieId,rating,timestamp",
) -> Path:
    """Write a MovieLens-format zip; movies default to 'Movie <id> (2000)' for every rated id."""
    ratings = list(ratings)
    if movies is None:
        ids = sorted({row[1] for row in ratings})
        movies = [(movie_id, f"Movie {movie_id} (2000)", "Drama") for movie_id in ids]
    ratings_csv = ratings_header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in ratings)
    movies_csv = "movieId,title,genres\n" + "".join(
        f'{movie_id},"{title}",{genres}\n' for movie_id, title, genres in movies
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}/ratings.csv", ratings_csv)
        archive.writestr(f"{folder}/movies.csv", movies_csv)
    return path


VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@contextlib.contextmanager
def running_server(
    command: list[str], cwd: Path, ready_url: str, *, env: dict | None = None, timeout_s: float = 120.0
) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own process group (log in ``cwd/server.log``), wait until
    ``ready_url`` answers, and stop the whole group afterwards, whatever happens."""
    with open(cwd / "server.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_http(ready_url, process, timeout_s=timeout_s)
            yield process
        finally:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a server started with start_new_session=True, workers included."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


TINY_SYNTHETIC = [
    "data=synthetic",
    "data.synthetic.users=150",
    "data.synthetic.movies=120",
    "data.synthetic.ratings=9000",
    "data.synthetic.clusters=4",
    "trainer.max_epochs=2",
    "trainer.batch_size=512",
    "trainer.progress_bar=false",
]

# The sequence user tower on TINY_SYNTHETIC: short windows, the recipe's optimizer.
TINY_SEQUENCE = [
    "model.user_tower=sequence",
    "model.max_history=20",
    "trainer.optimizer=adamw",
    "trainer.lr=0.005",
    "model.l2_reg=0",
]


def scratch_paths(root: Path, raw_zip: Path | None = None) -> list[str]:
    """Overrides that keep a run's data and outputs under ``root`` (its raw zip too, unless given)."""
    return [
        f"paths.raw_zip={raw_zip if raw_zip is not None else root / 'raw/synthetic.zip'}",
        f"paths.processed_dir={root / 'processed'}",
        f"paths.artifacts_dir={root / 'artifacts'}",
        f"paths.plots_dir={root / 'plots'}",
    ]


# Pairs per epoch of the fits on TINY_SYNTHETIC in tests/training (a share of its train pairs).
TINY_FIT_MAX_PAIRS = 1000


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``two-tower <args>`` as a user runs it."""
    return subprocess.run(
        [str(VENV_BIN / "two-tower"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


# Popularity's test Recall@50 on ml-latest-small: fitted on the split, whatever the seed.
POPULARITY_TEST_RECALL_AT_50 = 0.1376


def floor_from_seeds(values) -> float:
    """mean - 3 sd over seeds, never above what every seed reached."""
    return min(statistics.mean(values) - 3 * statistics.stdev(values), min(values))


def quality_floors(test_recall_at_50_by_seed: dict[int, float]) -> tuple[float, float]:
    """(test Recall@50 floor, floor of its ratio to popularity) from the spread over seeds."""
    values = list(test_recall_at_50_by_seed.values())
    return floor_from_seeds(values), floor_from_seeds([v / POPULARITY_TEST_RECALL_AT_50 for v in values])
