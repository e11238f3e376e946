"""Benchmark ``mlflow models serve`` over loopback HTTP on an ML-20M-sized index.

    .venv/bin/python benchmarks/bench_serving.py                  # 1 worker, 16 clients for 30 s
    .venv/bin/python benchmarks/bench_serving.py --workers 2 --server-env OMP_NUM_THREADS=1

Packages the random index of bench_inference.py (written if missing), starts the real server
from a scratch directory, then measures: time to the first answer; one client's latency p50/p99
over ``--single-requests`` sequential requests (keep-alive, one random known user, k=``--k``);
``--clients`` concurrent clients for ``--duration`` seconds (each waits for its answer before
sending the next, 30 s request timeout): requests/s, latency p50/p99 and the error count (any
non-200 or failed request); and the peak RSS of the server's whole process tree, sampled every
0.1 s. Results are printed and written to ``benchmarks/results/bench_serving[-<label>].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import RESULTS, ensure_index, machine
from random_index import ML20M_MOVIES, ML20M_USERS

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.settings import InferConfig

VENV_BIN = Path(sys.executable).parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=RESULTS / "index-20m")
    parser.add_argument("--package", type=Path, default=RESULTS / "mlflow_model-20m")
    parser.add_argument("--users", type=int, default=ML20M_USERS)
    parser.add_argument("--movies", type=int, default=ML20M_MOVIES)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--mean-positives", type=float, default=70.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="mlflow models serve --workers")
    parser.add_argument("--server-env", nargs="*", default=[], help="KEY=VALUE for the server process")
    parser.add_argument("--single-requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--label", default="", help="suffix of the results file")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def body(user_id: int, k: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["user_id", "k"], "data": [[user_id, k]]}}).encode()


class TreeRssSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.interval_s, self.peak_bytes = psutil.Process(pid), interval_s, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
                total = sum(p.memory_info().rss for p in processes if p.is_running())
                self.peak_bytes = max(self.peak_bytes, total)
            except psutil.Error:
                pass
            self.halt.wait(self.interval_s)


def start_server(
    package: Path, workers: int, extra_env: list[str], cwd: Path
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update(item.split("=", 1) for item in extra_env)
    command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(package), "-p", str(port)]
    command += ["--host", "127.0.0.1", "--env-manager", "local", "--workers", str(workers)]
    log = open(cwd / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def first_answer_s(url: str, process: subprocess.Popen, started: float, k: int) -> float:
    while time.monotonic() - started < 300:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            if requests.post(f"{url}/invocations", data=body(1, k), headers=JSON, timeout=5).ok:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError("no answer within 300 s")


JSON = {"Content-Type": "application/json"}


def one_client(url: str, user_ids: np.ndarray, k: int, n: int) -> dict[str, float]:
    latencies, errors = [], 0
    with requests.Session() as session:
        for user_id in random.Random(1).choices(user_ids.tolist(), k=n):
            started = time.perf_counter()
            response = session.post(f"{url}/invocations", data=body(user_id, k), headers=JSON, timeout=30)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
    return {**percentiles(latencies), "requests": n, "errors": errors}


async def concurrent_clients(url: str, user_ids: list[int], k: int, clients: int, duration: float) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(seed: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/invocations", data=body(rng.choice(user_ids), k), headers=JSON
                ) as r:
                    await r.read()
                    errors += r.status != 200
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(seed, session) for seed in range(clients)))
        elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "errors": errors,
        **percentiles(latencies),
    }


def percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def main() -> None:
    args = parse_args()
    ensure_index(args)
    started = time.perf_counter()
    package_model(args.index, args.package, InferConfig())
    package_s = time.perf_counter() - started
    user_ids = np.arange(1, args.users + 1)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        launched = time.monotonic()
        process, url = start_server(args.package, args.workers, args.server_env, Path(scratch))
        sampler = TreeRssSampler(process.pid)
        sampler.start()
        try:
            ready_s = first_answer_s(url, process, launched, args.k)
            single = one_client(url, user_ids, args.k, args.single_requests)
            load = asyncio.run(
                concurrent_clients(url, user_ids.tolist(), args.k, args.clients, args.duration)
            )
        finally:
            sampler.halt.set()
            sampler.join()
            stop_server(process)
            server_log = (Path(scratch) / "server.log").read_text(errors="replace")
    report = {
        "workers": args.workers,
        "server_env": args.server_env,
        "k": args.k,
        "package_s": package_s,
        "first_answer_s": ready_s,
        "one_client": single,
        "concurrent": load,
        "server_peak_rss_mb": sampler.peak_bytes / 2**20,
        "lightning_in_server_log": "lightning" in server_log.lower(),
        "machine": machine(),
    }
    print(f"first answer {ready_s:.1f} s after launch (package {package_s:.1f} s)")
    print(
        f"1 client, {single['requests']} requests: "
        f"p50 {single['p50_ms']:.2f} ms  p99 {single['p99_ms']:.2f} ms"
    )
    print(
        f"{load['clients']} clients, {load['seconds']:.0f} s: {load['requests_per_s']:.0f} req/s, "
        f"p50 {load['p50_ms']:.1f} ms  p99 {load['p99_ms']:.1f} ms, errors {load['errors']}"
    )
    print(f"server peak RSS {report['server_peak_rss_mb']:.0f} MB ({args.workers} worker(s))")
    out = RESULTS / f"bench_serving{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
