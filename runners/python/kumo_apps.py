"""Kumo Python runner: web applications as functions.

Imported by kumo_runner.py only when the loaded object is an ASGI app
(FastAPI, Starlette, Quart…) or a WSGI app (Flask, Django, Bottle, Falcon…),
so plain handlers never pay for it.  An HTTP event of the handler contract

    {method, path, params, query, rawQuery, headers, body, isBase64Encoded,
     basePath}

becomes one ASGI HTTP scope or one WSGI environ; the app's whole response
(no streaming) becomes {statusCode, headers, body, isBase64Encoded}.

- ASGI: the app is served on the runner's one event loop; `lifespan`
  startup runs once when the code is loaded (a failure there is a load
  error), shutdown when the host closes the channel.  An app that does not
  support lifespan is served without it, as the ASGI spec says.
- Both: the app is mounted at the event's basePath (`/fn/{project}/
  {function}`): ASGI `root_path` (and `path` includes it, as uvicorn does),
  WSGI `SCRIPT_NAME`; so links and redirects the app builds point back
  through Kumo.  The invocation context is at `scope["extensions"]
  ["kumo.context"]` and `environ["kumo.context"]`.
"""

import binascii
import io
import sys

_CO_COROUTINE = 0x80
_CO_VARARGS = 0x04


def _code(fn):
    """The code object behind fn and how many leading arguments are bound."""
    func = getattr(fn, "__func__", None)
    if func is not None and getattr(fn, "__self__", None) is not None:
        code = getattr(func, "__code__", None)
        return code, 1
    code = getattr(fn, "__code__", None)
    if code is not None:
        return code, 0
    if isinstance(fn, type):
        return None, 0
    call = getattr(type(fn), "__call__", None)
    code = getattr(call, "__code__", None)
    return code, 1


def kind(obj):
    """'asgi', 'wsgi', or None for a plain handler."""
    if hasattr(obj, "wsgi_app") and callable(getattr(obj, "wsgi_app")):
        return "wsgi"  # Flask and friends
    try:
        code, bound = _code(obj)
    except Exception:
        return None
    if code is None:
        return None
    names = code.co_varnames[bound:code.co_argcount]
    if code.co_flags & _CO_COROUTINE and len(names) == 3:
        return "asgi"
    if len(names) == 2 and names[1] == "start_response":
        return "wsgi"
    if not code.co_flags & _CO_COROUTINE and code.co_flags & _CO_VARARGS and names == ():
        # A wrapper of the (*args, **kwargs) kind: look at what it wraps.
        inner = getattr(obj, "__wrapped__", None)
        if inner is not None and inner is not obj:
            return kind(inner)
    return None


# ---------------------------------------------------------------- the request

class _Request(object):
    __slots__ = ("method", "path", "base_path", "query", "headers", "body", "client", "host",
                 "port", "scheme")


def _request(event):
    if (type(event) is not dict or type(event.get("method")) is not str
            or type(event.get("path")) is not str):
        raise TypeError(
            "this function is a web application: call it over HTTP (/fn/{project}/{function}/...) "
            "or invoke it with an HTTP event such as {\"method\": \"GET\", \"path\": \"/\"}")
    r = _Request()
    r.method = event["method"].upper()
    path = event["path"] or "/"
    r.path = path if path.startswith("/") else "/" + path
    base = event.get("basePath")
    r.base_path = base.rstrip("/") if type(base) is str else ""
    raw = event.get("rawQuery")
    if type(raw) is str:
        r.query = raw
    else:
        from urllib.parse import urlencode
        query = event.get("query")
        r.query = urlencode(query, doseq=True) if type(query) is dict else ""
    headers = event.get("headers")
    r.headers = []
    if type(headers) is dict:
        for name, value in headers.items():
            if type(name) is str and value is not None:
                r.headers.append((name.lower(), value if type(value) is str else str(value)))
    body = event.get("body")
    if body is None:
        r.body = b""
    elif event.get("isBase64Encoded"):
        r.body = binascii.a2b_base64(body)
    elif type(body) is str:
        r.body = body.encode("utf-8")
    else:
        import json
        r.body = json.dumps(body).encode("utf-8")
    lookup = dict(r.headers)
    r.scheme = lookup.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = lookup.get("host", "localhost")
    r.host, _, port = host.rpartition(":") if host.rpartition(":")[2].isdigit() else (host, "", "")
    r.port = int(port) if port else (443 if r.scheme == "https" else 80)
    # The address the server saw, never a header the client wrote.
    source = event.get("sourceIp")
    r.client = source if type(source) is str and source else "127.0.0.1"
    return r


def _response(status, headers, body):
    out = {}
    for name, value in headers:
        if name in out:
            prev = out[name]
            out[name] = prev + [value] if type(prev) is list else [prev, value]
        else:
            out[name] = value
    try:
        text = body.decode("utf-8")
        return {"statusCode": status, "headers": out, "body": text, "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"statusCode": status, "headers": out,
                "body": binascii.b2a_base64(body, newline=False).decode("ascii"),
                "isBase64Encoded": True}


def _latin1(b):
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else str(b)


# ---------------------------------------------------------------- ASGI

class AsgiApp(object):
    """Serves an ASGI 3 application, one request per call."""

    def __init__(self, app, loop, asyncio):
        self.app = app
        self.loop = loop
        self.asyncio = asyncio
        self.state = {}
        self._lifespan = None  # (queue, done future) while lifespan runs

    def _scope_base(self):
        return {"asgi": {"version": "3.0", "spec_version": "2.3"}, "state": self.state}

    def startup(self, timeout):
        """Runs lifespan startup; raises if the app reports a failure."""
        asyncio = self.asyncio
        loop = self.loop
        queue = asyncio.Queue()
        started = loop.create_future()
        finished = loop.create_future()

        async def receive():
            return await queue.get()

        async def send(message):
            t = message.get("type")
            if t == "lifespan.startup.complete" and not started.done():
                started.set_result(None)
            elif t == "lifespan.startup.failed" and not started.done():
                started.set_exception(RuntimeError(
                    "lifespan startup failed: %s" % (message.get("message") or "no message")))
            elif t in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and not finished.done():
                finished.set_result(t)

        scope = self._scope_base()
        scope["type"] = "lifespan"
        task = loop.create_task(self.app(scope, receive, send))
        queue.put_nowait({"type": "lifespan.startup"})

        async def wait():
            done, _ = await asyncio.wait([started, task], timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if started in done:
                started.result()  # raises on startup.failed
                return True
            if task in done:
                # An app without lifespan support raises or returns at once:
                # serve it without lifespan events.
                if not task.cancelled():
                    task.exception()
                return False
            raise TimeoutError("lifespan startup did not complete within %d s" % timeout)

        if loop.run_until_complete(wait()):
            self._lifespan = (queue, finished)

    def shutdown(self, timeout):
        if self._lifespan is None:
            return
        queue, finished = self._lifespan
        self._lifespan = None
        queue.put_nowait({"type": "lifespan.shutdown"})
        try:
            self.loop.run_until_complete(self.asyncio.wait_for(finished, timeout))
        except BaseException:
            pass

    def __call__(self, event, context):
        r = _request(event)
        asyncio = self.asyncio
        loop = self.loop
        full = r.base_path + r.path
        scope = self._scope_base()
        scope.update({
            "type": "http",
            "http_version": "1.1",
            "method": r.method,
            "scheme": r.scheme,
            "path": full,
            "raw_path": full.encode("utf-8"),
            "root_path": r.base_path,
            "query_string": r.query.encode("latin-1", "replace"),
            "headers": [(n.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                        for n, v in r.headers],
            "client": (r.client, 0),
            "server": (r.host, r.port),
            "extensions": {"kumo.context": context},
        })
        scope["state"] = dict(self.state)
        status = [None]
        headers = []
        chunks = []
        complete = loop.create_future()
        sent_request = [False]
        finished = [False]

        async def receive():
            if not sent_request[0]:
                sent_request[0] = True
                return {"type": "http.request", "body": r.body, "more_body": False}
            await asyncio.shield(complete)
            return {"type": "http.disconnect"}

        async def send(message):
            t = message.get("type")
            if t == "http.response.start":
                if status[0] is not None:
                    raise RuntimeError("http.response.start sent twice")
                status[0] = int(message.get("status", 200))
                for name, value in message.get("headers") or ():
                    headers.append((_latin1(name).lower(), _latin1(value)))
            elif t == "http.response.body":
                if status[0] is None:
                    raise RuntimeError("http.response.body sent before http.response.start")
                if complete.done():
                    return
                body = message.get("body") or b""
                if body:
                    chunks.append(bytes(body))
                if not message.get("more_body", False):
                    finished[0] = True
                    complete.set_result(None)

        async def run():
            try:
                await self.app(scope, receive, send)
            finally:
                if not complete.done():
                    complete.set_result(None)

        try:
            loop.run_until_complete(run())
        except BaseException:
            if not finished[0]:
                raise
            # The response was sent: the error after it is only logged.
            import traceback
            traceback.print_exc(file=sys.stderr)
        if status[0] is None:
            raise RuntimeError("the ASGI app returned without sending a response")
        return _response(status[0], headers, b"".join(chunks))


# ---------------------------------------------------------------- WSGI

class WsgiApp(object):
    """Serves a WSGI (PEP 3333) application, one request per call."""

    def __init__(self, app):
        self.app = app

    def __call__(self, event, context):
        r = _request(event)
        environ = {
            "REQUEST_METHOD": r.method,
            "SCRIPT_NAME": r.base_path.encode("utf-8").decode("latin-1"),
            "PATH_INFO": r.path.encode("utf-8").decode("latin-1"),
            "QUERY_STRING": r.query,
            "SERVER_NAME": r.host,
            "SERVER_PORT": str(r.port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": r.client,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": r.scheme,
            "wsgi.input": io.BytesIO(r.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "kumo.context": context,
        }
        for name, value in r.headers:
            value = value.encode("utf-8", "replace").decode("latin-1")
            if name == "content-type":
                environ["CONTENT_TYPE"] = value
            elif name == "content-length":
                environ["CONTENT_LENGTH"] = value
            elif "_" not in name:
                # A header with '_' would pass for one with '-' (x-user_id
                # for x-user-id, set by a proxy): left out, as servers do.
                key = "HTTP_" + name.upper().replace("-", "_")
                environ[key] = environ[key] + "," + value if key in environ else value
        if r.body and "CONTENT_LENGTH" not in environ:
            environ["CONTENT_LENGTH"] = str(len(r.body))
        started = []
        written = []

        def start_response(status, response_headers, exc_info=None):
            if exc_info is not None:
                try:
                    if started:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif started:
                raise AssertionError("start_response called twice without exc_info")
            started[:] = [status, list(response_headers)]
            return written.append

        result = self.app(environ, start_response)
        try:
            for chunk in result:
                if chunk:
                    written.append(bytes(chunk))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise RuntimeError("the WSGI app returned without calling start_response")
        status_line, response_headers = started
        try:
            status = int(str(status_line).split(" ", 1)[0])
        except ValueError:
            raise RuntimeError("the WSGI app gave an invalid status %r" % (status_line,)) from None
        headers = [(str(n).lower(), str(v)) for n, v in response_headers]
        return _response(status, headers, b"".join(written))
