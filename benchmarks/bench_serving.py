"""Benchmark the served model over loopback HTTP on an ML-20M-sized index, beside a no-op model.

    .venv/bin/python benchmarks/bench_serving.py                 # two-tower serve stack, its defaults
    .venv/bin/python benchmarks/bench_serving.py --stack mlflow  # plain `mlflow models serve`
    .venv/bin/python benchmarks/bench_serving.py --workers 1 --rounds 7
    .venv/bin/python benchmarks/bench_serving.py --answer-table-k 0    # every answer computed
    .venv/bin/python benchmarks/bench_serving.py --ours product-only   # the exact-scoring floor

Packages the random index of bench_inference.py (written if missing) and a no-op pyfunc model
(``noop_model.py``: an empty answer for any request), and starts both on the same server stack
from a scratch directory: ``--stack two-tower`` (default) is what ``two-tower serve`` runs
(MLflow's scoring app behind our guard, uvicorn, one torch thread per worker); ``--stack mlflow``
is ``mlflow models serve --env-manager local``. The machine may be shared, so the two are measured
*interleaved*: ``--rounds`` rounds, each measuring the no-op then ours (the order alternates), with

- one client: ``--single-requests`` sequential requests (keep-alive, one random known user,
  k=``--k``): latency p50/p99;
- ``--clients`` concurrent clients for ``--duration`` seconds each (each waits for its answer
  before sending the next, 30 s timeout): requests/s, latency p50/p99, errors (non-200 or failed).

Reported: the median over rounds of each figure for both servers, their ratios (ours / no-op),
the targets (one client p50 <= 1.3x the no-op's, 16 clients >= 0.6x its requests/s, 0 errors),
the server's CPU time per request in each part (its process tree's user + system time over the
requests: the figure a shared machine disturbs least), time to the first answer and the peak RSS
of each server's process tree (sampled every 0.1 s).
Printed and written to ``benchmarks/results/bench_serving[-<label>].json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
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
from bench_inference import RESULTS, add_index_arguments, ensure_index, machine

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.pipelines.serve_pipeline import server_command
from two_tower_recsys.settings import InferConfig, ServeConfig

VENV_BIN = Path(sys.executable).parent
NOOP_CODE = Path(__file__).with_name("noop_model.py")
PRODUCT_ONLY_CODE = Path(__file__).with_name("product_only_model.py")
TARGETS = {"one_client_p50_ratio_max": 1.3, "concurrent_rps_ratio_min": 0.6, "errors": 0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_index_arguments(parser)
    parser.add_argument("--package", type=Path, default=RESULTS / "mlflow_model-20m")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--noop-package", type=Path, default=RESULTS / "mlflow_model-noop")
    parser.add_argument("--stack", choices=["two-tower", "mlflow"], default="two-tower")
    parser.add_argument(
        "--workers", type=int, default=ServeConfig().workers, help="server worker processes (serve.workers)"
    )
    parser.add_argument("--server-env", nargs="*", default=[], help="KEY=VALUE for the server processes")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (no-op, ours)")
    parser.add_argument("--single-requests", type=int, default=300, help="per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of concurrent load per round")
    parser.add_argument(
        "--answer-table-k",
        type=int,
        default=InferConfig().answer_table_k,
        help="infer.answer_table_k of our package (0: every answer computed per request)",
    )
    parser.add_argument(
        "--ours",
        choices=["two-tower", "product-only"],
        default="two-tower",
        help="what is measured beside the no-op: our package, or product_only_model.py (a floor)",
    )
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
    package: Path, stack: str, workers: int, extra_env: list[str], log_path: Path
) -> tuple[subprocess.Popen, str]:
    """Serve ``package`` on a free port: what `two-tower serve` runs, or `mlflow models serve`."""
    port = free_port()
    if stack == "two-tower":
        command, env = server_command(package, ServeConfig(port=port, workers=workers, model=str(package)))
    else:
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(package), "-p", str(port)]
        command += ["--host", "127.0.0.1", "--env-manager", "local", "--workers", str(workers)]
    env.update(item.split("=", 1) for item in extra_env)
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        command, cwd=log_path.parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, f"http://127.0.0.1:{port}"


def package_code_model(code: Path, destination: Path) -> None:
    import mlflow.pyfunc

    if destination.exists():
        shutil.rmtree(destination)
    mlflow.pyfunc.save_model(path=str(destination), python_model=str(code))


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


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    root, total = psutil.Process(pid), 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measure_round(url: str, server_pid: int, user_ids: np.ndarray, args: argparse.Namespace) -> dict:
    """Latency and throughput, and the server's CPU time per request in each part.

    CPU time per request is the figure a shared machine disturbs least: wall-clock figures
    stretch with whatever else runs, CPU time much less. On a machine of its own, a server whose
    cores are busy serves about (cores / CPU time per request) requests per second.
    """
    cpu_before = tree_cpu_s(server_pid)
    single = one_client(url, user_ids, args.k, args.single_requests)
    cpu_single = tree_cpu_s(server_pid)
    load = asyncio.run(concurrent_clients(url, user_ids.tolist(), args.k, args.clients, args.duration))
    cpu_load = tree_cpu_s(server_pid)
    single["cpu_ms_per_request"] = (cpu_single - cpu_before) * 1000 / single["requests"]
    load["cpu_ms_per_request"] = (cpu_load - cpu_single) * 1000 / max(load["requests"], 1)
    return {"one_client": single, "concurrent": load}


def summarise(rounds: list[dict]) -> dict:
    """Median over rounds of each figure; errors summed."""

    def median(part: str, key: str) -> float:
        return statistics.median(r[part][key] for r in rounds)

    return {
        "one_client": {key: median("one_client", key) for key in ("p50_ms", "p99_ms", "cpu_ms_per_request")}
        | {"errors": sum(r["one_client"]["errors"] for r in rounds)},
        "concurrent": {
            key: median("concurrent", key)
            for key in ("requests_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request")
        }
        | {"errors": sum(r["concurrent"]["errors"] for r in rounds)},
    }


def main() -> None:
    args = parse_args()
    ensure_index(args)
    started = time.perf_counter()
    if args.ours == "two-tower":
        package_model(args.index, args.package, InferConfig(answer_table_k=args.answer_table_k))
    else:
        args.package = RESULTS / "mlflow_model-product-only"
        package_code_model(PRODUCT_ONLY_CODE, args.package)
    package_s = time.perf_counter() - started
    package_code_model(NOOP_CODE, args.noop_package)
    user_ids = np.arange(1, args.users + 1)
    servers = {"noop": args.noop_package, "ours": args.package}
    rounds: dict[str, list[dict]] = {name: [] for name in servers}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        launched, processes, urls, samplers, ready_s = time.monotonic(), {}, {}, {}, {}
        try:
            for name, package in servers.items():
                log_path = Path(scratch) / f"{name}.log"
                processes[name], urls[name] = start_server(
                    package, args.stack, args.workers, args.server_env, log_path
                )
                samplers[name] = TreeRssSampler(processes[name].pid)
                samplers[name].start()
            for name in servers:
                ready_s[name] = first_answer_s(urls[name], processes[name], launched, args.k)
            for number in range(args.rounds):
                order = ["noop", "ours"] if number % 2 == 0 else ["ours", "noop"]
                for name in order:
                    rounds[name].append(measure_round(urls[name], processes[name].pid, user_ids, args))
                print(
                    f"round {number + 1}/{args.rounds}: 1 client p50 noop "
                    f"{rounds['noop'][-1]['one_client']['p50_ms']:.2f} / ours "
                    f"{rounds['ours'][-1]['one_client']['p50_ms']:.2f} ms; {args.clients} clients "
                    f"{rounds['noop'][-1]['concurrent']['requests_per_s']:.0f} / "
                    f"{rounds['ours'][-1]['concurrent']['requests_per_s']:.0f} req/s",
                    flush=True,
                )
        finally:
            for name, process in processes.items():
                samplers[name].halt.set()
                samplers[name].join()
                stop_server(process)
            ours_log = (Path(scratch) / "ours.log").read_text(errors="replace")
    summary = {name: summarise(rounds[name]) for name in servers}
    noop, ours = summary["noop"], summary["ours"]
    ratios = {
        "one_client_p50": ours["one_client"]["p50_ms"] / noop["one_client"]["p50_ms"],
        "one_client_p99": ours["one_client"]["p99_ms"] / noop["one_client"]["p99_ms"],
        "concurrent_rps": ours["concurrent"]["requests_per_s"] / noop["concurrent"]["requests_per_s"],
        "concurrent_p50": ours["concurrent"]["p50_ms"] / noop["concurrent"]["p50_ms"],
        "one_client_cpu_per_request": ours["one_client"]["cpu_ms_per_request"]
        / noop["one_client"]["cpu_ms_per_request"],
        "concurrent_cpu_per_request": ours["concurrent"]["cpu_ms_per_request"]
        / noop["concurrent"]["cpu_ms_per_request"],
    }
    errors = sum(s["one_client"]["errors"] + s["concurrent"]["errors"] for s in summary.values())
    met = {
        "one_client_p50": ratios["one_client_p50"] <= TARGETS["one_client_p50_ratio_max"],
        "concurrent_rps": ratios["concurrent_rps"] >= TARGETS["concurrent_rps_ratio_min"],
        "no_errors": errors == 0,
    }
    report = {
        "stack": args.stack,
        "workers": args.workers,
        "ours": args.ours,
        "answer_table_k": args.answer_table_k,
        "server_env": args.server_env,
        "k": args.k,
        "rounds": args.rounds,
        "single_requests_per_round": args.single_requests,
        "clients": args.clients,
        "seconds_per_round": args.duration,
        "package_s": package_s,
        "first_answer_s": ready_s,
        "summary": summary,
        "ratios_ours_over_noop": ratios,
        "targets": TARGETS,
        "targets_met": met,
        "per_round": rounds,
        "server_peak_rss_mb": {name: sampler.peak_bytes / 2**20 for name, sampler in samplers.items()},
        "lightning_in_server_log": "lightning" in ours_log.lower(),
        "load_average_at_end": os.getloadavg(),
        "machine": machine(),
    }
    table = f"answer table k={args.answer_table_k}" if args.answer_table_k else "no answer table"
    table = table if args.ours == "two-tower" else "ours = product_only_model.py"
    setup = f"stack {args.stack}, {args.workers} worker(s), k={args.k}, {table}"
    print(f"\n{setup}, medians of {args.rounds} rounds")
    print(f"{'':28}{'no-op':>10}{'ours':>10}{'ours/no-op':>12}")
    rows = [
        ("1 client p50 (ms)", "one_client", "p50_ms", ratios["one_client_p50"]),
        ("1 client p99 (ms)", "one_client", "p99_ms", ratios["one_client_p99"]),
        (f"{args.clients} clients req/s", "concurrent", "requests_per_s", ratios["concurrent_rps"]),
        (f"{args.clients} clients p50 (ms)", "concurrent", "p50_ms", ratios["concurrent_p50"]),
        ("1 client CPU ms/request", "one_client", "cpu_ms_per_request", ratios["one_client_cpu_per_request"]),
        (
            f"{args.clients} clients CPU ms/request",
            "concurrent",
            "cpu_ms_per_request",
            ratios["concurrent_cpu_per_request"],
        ),
    ]
    for title, part, key, ratio in rows:
        print(f"{title:28}{noop[part][key]:>10.2f}{ours[part][key]:>10.2f}{ratio:>12.2f}")
    print(f"errors: {errors}; first answer s: {ready_s}; peak RSS MB: {report['server_peak_rss_mb']}")
    print(f"targets met: {met} (load average at the end: {report['load_average_at_end']})")
    out = RESULTS / f"bench_serving{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
