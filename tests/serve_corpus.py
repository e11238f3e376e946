"""A seeded corpus of malformed requests for the fault tests of the real server.

Each case is ``(body, content_type)``; ``content_type`` None sends no Content-Type header at all.
The bodies mix broken JSON in every MLflow input format (wrong types, objects where columns go,
huge and non-finite numbers, truncations), CSV that pandas cannot parse or that parses to the
wrong table, and random bytes, sent with JSON, CSV, Parquet, odd or missing content types.
"""

from __future__ import annotations

import json
import random

JSON_TYPE, CSV_TYPE, PARQUET_TYPE = "application/json", "text/csv", "application/vnd.apache.parquet"
CONTENT_TYPES = [
    JSON_TYPE,
    CSV_TYPE,
    PARQUET_TYPE,
    None,
    "",
    "text/plain",
    "application/json; charset=latin-1",
    "application/json; boundary=x",
    "text/csv; charset=utf-8",
    "multipart/form-data",
]
NUMBERS = [0, -1, 1, 2**63, -(2**63) - 1, 2**70, 1.5, 1e308, -1e308, 10.0, float("nan"), float("inf")]


def random_value(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(9 if depth < 2 else 5)
    if choice == 0:
        return rng.choice(NUMBERS)
    if choice == 1:
        return rng.randint(-5, 300)
    if choice == 2:
        return rng.choice(["", "1", "k", "user_id", "None", "\u00e9\u4e2d", "/etc/passwd", "\x00"])
    if choice == 3:
        return rng.choice([True, False, None])
    if choice == 4:
        return []
    if choice in (5, 6):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["user_id", "k", "x", ""]): random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))
    }


def malformed_json(rng: random.Random) -> object:
    shape = rng.randrange(7)
    if shape == 0:
        columns = rng.choice(
            [["user_id", "k"], ["user_id"], ["k", "k"], [], ["user_id", "k", "x"], [1, None]]
        )
        rows = [[random_value(rng) for _ in range(rng.randint(0, 3))] for _ in range(rng.randint(0, 3))]
        return {"dataframe_split": {"columns": columns, "data": rows}}
    if shape == 1:
        return {"dataframe_split": random_value(rng)}
    if shape == 2:
        records = [{"user_id": random_value(rng), "k": random_value(rng)} for _ in range(rng.randint(0, 3))]
        return {"dataframe_records": rng.choice([records, random_value(rng)])}
    if shape == 3:
        return {"inputs": {"user_id": random_value(rng), "k": random_value(rng)}}
    if shape == 4:
        return {"inputs": random_value(rng)}
    if shape == 5:
        return {"instances": [{"user_id": random_value(rng), "k": random_value(rng)}]}
    return {rng.choice(["params", "dataframe_split", "x"]): random_value(rng), "inputs": random_value(rng)}


def malformed_csv(rng: random.Random) -> bytes:
    header = rng.choice(["user_id,k", "user_id", "k,k", "", "user_id;k", '"user_id,k'])
    cells = ["1", "2.5", "", '"', '""', "x", "-3", "1e308", "\x00", "9" * 30, ",", "\u00e9"]
    rows = [",".join(rng.choice(cells) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(0, 4))]
    text = "\n".join([header, *rows])
    if rng.random() < 0.3:
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng.choice(['"', "\r", "\n\n", ",,,"]) + text[cut:]
    return text.encode("utf-8", errors="surrogatepass")


def corpus(n: int = 400, seed: int = 20260907) -> list[tuple[bytes, str | None]]:
    rng = random.Random(seed)
    cases: list[tuple[bytes, str | None]] = []
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            body = json.dumps(malformed_json(rng)).encode()
            if rng.random() < 0.2:
                body = body[: rng.randint(0, len(body))]
        elif kind == 1:
            body = malformed_csv(rng)
        elif kind == 2:
            body = rng.randbytes(rng.randint(0, 300))
        else:
            body = rng.choice(
                [b"", b"{}", b"[]", b"null", b"1", b'"x"', b'{"inputs": }', b"PAR1" + rng.randbytes(40)]
            )
        content_type = rng.choice(CONTENT_TYPES) if rng.random() < 0.5 else rng.choice([JSON_TYPE, CSV_TYPE])
        cases.append((body, content_type))
    return cases
