"""Baseline (b): the hello handler served directly by uvicorn as a raw ASGI app.

No framework: this module is the ASGI callable. For every HTTP request it
builds the event Kumo's gateway passes to a handler (method, path, params,
query with repeated keys joined by commas, headers with lower-case names,
body as text or base64, isBase64Encoded), calls the same `handler(event)`,
and answers its return value as JSON, as Kumo's gateway does for a dict.

The handler is imported from `main.py` in the directory named by the
environment variable BENCH_CODE_DIR (bench/run.py writes the very source it
deploys to Kumo there); without it, an identical handler is defined here.

Run by bench/run.py as

    bench/.venv/bin/python -m uvicorn --app-dir bench/baselines asgi_hello:app \
        --host 127.0.0.1 --port PORT --loop uvloop --http httptools \
        --workers 1 --log-level warning --no-access-log
"""

import base64
import json
import os
import sys
from urllib.parse import parse_qsl

_code_dir = os.environ.get("BENCH_CODE_DIR")
if _code_dir:
    sys.path.insert(0, _code_dir)
    from main import handler  # noqa: E402
else:
    def handler(event):
        return {"hello": "world"}

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _event(scope, body):
    query = {}
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    headers = {}
    for name, value in scope.get("headers", ()):
        # ASGI servers give header names in lower case already.
        name = name.decode("latin-1").lower()
        value = value.decode("utf-8", "replace")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode("ascii"), True
    return {
        "method": scope["method"],
        "path": scope["path"],
        "params": {},
        "query": query,
        "headers": headers,
        "body": text,
        "isBase64Encoded": b64,
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # http.disconnect
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    payload = _encode(handler(_event(scope, body))).encode()
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})
