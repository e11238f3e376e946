"""MLflow's scoring app, wrapped so that no request gets a traceback or a 500 it did not earn.

``two-tower serve`` runs ``uvicorn --factory two_tower_asgi:create_app`` with this directory as
uvicorn's ``--app-dir``, in the environment ``mlflow models serve`` would give it (model path,
request timeout). :func:`create_app` builds the app exactly as ``mlflow.pyfunc.scoring_server.app``
does and wraps it in :class:`ScoringGuard`, an ASGI middleware.

This module imports nothing from ``two_tower_recsys`` on purpose: the model then loads the code
packaged beside it (``code/two_tower_recsys``, put first on ``sys.path`` by MLflow), exactly as
under ``mlflow models serve``, and not whatever version happens to be installed.

What the guard changes, for ``POST /invocations`` only (every other answer passes untouched):

- a POST without a ``Content-Type`` header, which MLflow's handler answers with a bare 500, gets a
  415 naming the header and the types that are accepted;
- an error answer (4xx/5xx) is sent without MLflow's ``stack_trace`` field (MLflow fills it for
  CSV and Parquet bodies that pandas cannot parse), and a message that still looks like a
  traceback is replaced by a one-line one;
- an exception that escapes the app is logged here with its traceback and answered with a plain
  JSON 500, never uvicorn's text page.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger("two_tower_asgi")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

INVOCATIONS = "/invocations"
ACCEPTED_TYPES = "application/json, text/csv or application/vnd.apache.parquet"
# The first line of every traceback Python formats (traceback.print_exc and format_exc, which
# MLflow uses; exception groups too). Nothing looser: an error message quotes the request's own
# text (MLflow's begins "Failed to predict data '<the request's table>'"), which may well hold
# 'File "' or a path, and that message must reach the client as it is.
TRACEBACK_HEADER = "Traceback (most recent call last)"
# The error_code MLflow serialises with each status, for the answers the guard writes itself.
NO_CONTENT_TYPE = {
    "error_code": "BAD_REQUEST",
    "message": f"the request has no Content-Type header; send one of {ACCEPTED_TYPES}",
}
INTERNAL = {"error_code": "INTERNAL_ERROR", "message": "internal error while recommending"}


def create_app() -> ASGIApp:
    """MLflow's scoring app for the model at ``$__pyfunc_model_path__``, behind :class:`ScoringGuard`."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(os.environ[scoring_server._SERVER_MODEL_PATH])
    return ScoringGuard(scoring_server.init(model))


class ScoringGuard:
    """ASGI middleware around MLflow's scoring app (see the module docstring)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != INVOCATIONS:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST" and not any(name == b"content-type" for name, _ in scope["headers"]):
            await send_json(send, 415, NO_CONTENT_TYPE)
            return
        answer = _CleanErrors(send)
        try:
            await self.app(scope, receive, answer.send)
        except Exception:
            log.exception("the scoring app failed on %s %s", scope["method"], scope["path"])
            if answer.forwarded:
                raise  # the status is already on the wire; uvicorn closes the connection
            await send_json(send, 500, INTERNAL)


class _CleanErrors:
    """Passes a success straight through; holds an error answer until its body is complete, then
    sends it cleaned (see :func:`clean_error_body`)."""

    def __init__(self, send: Send):
        self._send = send
        self._held_start: Message | None = None
        self._held_body: list[bytes] = []
        self.forwarded = False  # True once anything reached the client

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self._held_start = message
            return
        if self._held_start is None:
            self.forwarded = True
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            return
        self._held_body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = self._held_start["status"]
        body, content_type = clean_error_body(status, b"".join(self._held_body), self._held_start)
        self._held_start = None
        self.forwarded = True
        await self._send(_start(status, body, content_type))
        await self._send({"type": "http.response.body", "body": body})


def clean_error_body(status: int, body: bytes, start: Message) -> tuple[bytes, bytes]:
    """(body, content type) of an error answer without stack traces."""
    content_type = dict(start.get("headers", [])).get(b"content-type", b"text/plain")
    try:
        error = json.loads(body)
    except ValueError:
        error = None
    if isinstance(error, dict):
        error.pop("stack_trace", None)
        if _looks_like_a_traceback(str(error.get("message", ""))):
            error["message"] = INTERNAL["message"] if status >= 500 else "the request could not be read"
        return json.dumps(error).encode(), b"application/json"
    text = body.decode("utf-8", errors="replace")
    if _looks_like_a_traceback(text):
        fallback = INTERNAL if status >= 500 else {"error_code": "BAD_REQUEST", "message": "bad request"}
        return json.dumps(fallback).encode(), b"application/json"
    return body, content_type


def _looks_like_a_traceback(text: str) -> bool:
    return TRACEBACK_HEADER in text


def _start(status: int, body: bytes, content_type: bytes) -> Message:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(_start(status, body, b"application/json"))
    await send({"type": "http.response.body", "body": body})
