"""The guard around MLflow's real scoring app, driven in process through ASGI (no sockets).

The app is the one `two-tower serve` runs: ``scoring_server.init`` of the loaded package, with
and without :class:`ScoringGuard`, so each fault is shown on the stock app and fixed on ours.
The real server is tested in ``tests/inference/test_serve_faults.py``.
"""

from __future__ import annotations

import asyncio
import json

import mlflow.pyfunc
import pytest
from inference_support import write_known_index
from mlflow.pyfunc import scoring_server

from two_tower_recsys.inference.packaging import package_model
from two_tower_recsys.serving.two_tower_asgi import ScoringGuard
from two_tower_recsys.settings import InferConfig


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    root = tmp_path_factory.mktemp("asgi")
    package = root / "mlflow_model"
    package_model(write_known_index(root / "artifacts"), package, InferConfig())
    stock = scoring_server.init(mlflow.pyfunc.load_model(str(package)))
    return stock, ScoringGuard(stock)


def call(app, body: bytes, headers: dict[str, str], path: str = "/invocations") -> tuple[int, bytes]:
    """One request through the ASGI app; (status, body). An exception the app raises propagates."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 5000),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    length = dict(start["headers"]).get(b"content-length")
    assert length is None or int(length) == len(content)  # a rewritten body gets its own length
    return start["status"], content


GOOD = json.dumps({"dataframe_split": {"columns": ["user_id", "k"], "data": [[7, 2], [99, 1]]}}).encode()
JSON = {"Content-Type": "application/json"}


def test_good_requests_and_model_errors_pass_through_unchanged(apps):
    stock, guarded = apps
    assert call(guarded, GOOD, JSON) == call(stock, GOOD, JSON)
    assert call(guarded, GOOD, JSON)[0] == 200
    bad_k = json.dumps({"dataframe_split": {"columns": ["user_id", "k"], "data": [[7, 0]]}}).encode()
    status, body = call(guarded, bad_k, JSON)
    assert (status, json.loads(body)) == (400, json.loads(call(stock, bad_k, JSON)[1]))
    assert json.loads(body)["detail"] == "row 0: k must be a positive integer, got 0"


def test_a_post_without_content_type_is_a_415_not_a_500(apps):
    stock, guarded = apps
    with pytest.raises(AttributeError):  # MLflow's handler reads None.split: uvicorn answers 500
        call(stock, GOOD, {})
    status, body = call(guarded, GOOD, {})
    assert status == 415
    assert json.loads(body)["message"].startswith("the request has no Content-Type header")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'user_id,k\n"1,2\n3', "text/csv"),  # an unterminated quote
        (b"PAR1 not parquet", "application/vnd.apache.parquet"),
    ],
)
def test_unparsable_csv_and_parquet_lose_the_stack_trace(apps, body, content_type):
    stock, guarded = apps
    stock_status, stock_body = call(stock, body, {"Content-Type": content_type})
    assert stock_status == 400 and "Traceback" in json.loads(stock_body)["stack_trace"]
    status, cleaned = call(guarded, body, {"Content-Type": content_type})
    error = json.loads(cleaned)
    assert status == 400 and "stack_trace" not in error and "Traceback" not in cleaned.decode()
    assert error["message"] == json.loads(stock_body)["message"]  # the reason itself is kept


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            json.dumps(
                {"dataframe_split": {"columns": ["user_id", "k"], "data": [['File "report.csv"', 2]]}}
            ),
            "application/json",
        ),
        (
            json.dumps({"dataframe_records": [{"user_id": "/srv/site-packages/x.py", "k": 1}]}),
            "application/json",
        ),
        ('user_id,k\nFile "a",2\n', "text/csv"),
    ],
    ids=["json-File-quote", "json-site-packages", "csv-File-quote"],
)
def test_a_4xx_quoting_the_requests_text_reaches_the_client_unchanged(apps, body, content_type):
    """MLflow's message quotes the request's table ("Failed to predict data '...'"): text a user
    sent that merely looks like part of a file path is not a traceback."""
    stock, guarded = apps
    stock_status, stock_body = call(stock, body.encode(), {"Content-Type": content_type})
    assert stock_status == 400
    assert call(guarded, body.encode(), {"Content-Type": content_type}) == (stock_status, stock_body)
    message = json.loads(stock_body)["message"]
    assert message.startswith("Failed to predict data") and ("File" in message or "site-packages" in message)


def _an_answer_with_a_traceback(as_json: bool):
    """A FastAPI app whose one route fails the way MLflow's handler reports errors, with a real
    traceback in the message (``as_json``: through MLflow's own exception wrapper) or as the
    plain-text body."""
    import traceback

    from fastapi import FastAPI
    from fastapi.responses import Response
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST

    app = FastAPI()

    @app.post("/invocations")
    @scoring_server._async_catch_mlflow_exception
    async def invocations():
        try:
            int('File "x"')  # a real exception, so a real traceback
        except ValueError:
            text = traceback.format_exc()
        if as_json:
            raise MlflowException(message=text, error_code=BAD_REQUEST)
        return Response(content=text, status_code=400, media_type="text/plain")

    return app


@pytest.mark.parametrize(
    ("as_json", "replacement"),
    [(True, "the request could not be read"), (False, "bad request")],
    ids=["json-message", "text-body"],
)
def test_a_traceback_in_a_4xx_is_still_replaced(as_json, replacement):
    app = _an_answer_with_a_traceback(as_json)
    status, stock_body = call(app, GOOD, JSON)
    assert status == 400 and "Traceback (most recent call last)" in stock_body.decode()
    status, cleaned = call(ScoringGuard(app), GOOD, JSON)
    assert status == 400 and "Traceback" not in cleaned.decode() and 'File "' not in cleaned.decode()
    assert json.loads(cleaned)["message"] == replacement
