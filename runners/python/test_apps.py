"""Tests for web applications served by the runner (kumo_apps.py): ASGI and
WSGI apps written by hand (no framework needed), driven over the protocol
like every other runner test."""

import base64
import os
import tempfile
import shutil
import unittest

from test_runner import RunnerTestCase


def http(method="GET", path="/", raw_query="", headers=None, body="", base="/fn/demo/app",
         b64=False):
    return {"method": method, "path": path, "params": {}, "query": {}, "rawQuery": raw_query,
            "headers": headers or {"host": "127.0.0.1:8080"}, "body": body,
            "isBase64Encoded": b64, "basePath": base}


ASGI_ECHO = """
import json

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")
    message = await receive()
    body = message["body"]
    info = {
        "method": scope["method"], "path": scope["path"], "root_path": scope["root_path"],
        "query": scope["query_string"].decode(), "body": body.decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "server": list(scope["server"]), "scheme": scope["scheme"],
        "request_id": scope["extensions"]["kumo.context"].request_id,
    }
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]})
    await send({"type": "http.response.body", "body": json.dumps(info).encode()[:10],
                "more_body": True})
    await send({"type": "http.response.body", "body": json.dumps(info).encode()[10:]})
"""


class TestAsgi(RunnerTestCase):
    def test_request_and_response_are_mapped(self):
        r = self.loaded(ASGI_ECHO)
        out = self.output(r, http("post", "/items/7", "x=1&x=2", {"host": "h.example:9000",
                                                               "x-thing": "yes"}, '{"a": 1}'))
        self.assertEqual(out["statusCode"], 201)
        self.assertEqual(out["headers"]["set-cookie"], ["a=1", "b=2"])
        self.assertEqual(out["headers"]["content-type"], "application/json")
        self.assertFalse(out["isBase64Encoded"])
        import json
        info = json.loads(out["body"])
        self.assertEqual(info["method"], "POST")
        self.assertEqual(info["path"], "/fn/demo/app/items/7")
        self.assertEqual(info["root_path"], "/fn/demo/app")
        self.assertEqual(info["query"], "x=1&x=2")
        self.assertEqual(info["body"], '{"a": 1}')
        self.assertEqual(info["headers"]["x-thing"], "yes")
        self.assertEqual(info["server"], ["h.example", 9000])
        self.assertEqual(info["scheme"], "http")
        self.assertTrue(info["request_id"].startswith("run-"))

    def test_app_is_found_under_its_usual_name_and_binary_bodies_are_base64(self):
        r = self.loaded("""
            async def send_bytes(scope, receive, send):
                if scope["type"] != "http":
                    return
                await receive()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": bytes([0, 255, 1])})
            app = send_bytes
        """)
        out = self.output(r, http(body=base64.b64encode(b"\x00\xff").decode(), b64=True))
        self.assertTrue(out["isBase64Encoded"])
        self.assertEqual(base64.b64decode(out["body"]), bytes([0, 255, 1]))

    def test_lifespan_startup_runs_once_and_its_state_reaches_requests(self):
        r = self.loaded("""
            starts = []

            async def app(scope, receive, send):
                if scope["type"] == "lifespan":
                    while True:
                        message = await receive()
                        if message["type"] == "lifespan.startup":
                            starts.append(1)
                            scope["state"]["db"] = "connected"
                            await send({"type": "lifespan.startup.complete"})
                        elif message["type"] == "lifespan.shutdown":
                            print("shutdown ran", flush=True)
                            await send({"type": "lifespan.shutdown.complete"})
                            return
                await receive()
                text = "%s %d" % (scope["state"]["db"], len(starts))
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": text.encode()})
        """)
        self.assertEqual(self.output(r, http())["body"], "connected 1")
        self.assertEqual(self.output(r, http())["body"], "connected 1")
        rc, out, _ = r.finish()
        self.assertEqual(rc, 0)
        self.assertIn("shutdown ran", out)

    def test_failed_lifespan_startup_is_a_load_error(self):
        r = self.start({"main.py": """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
"""})
        reply = r.load()
        self.assertEqual(reply["type"], "load_error", reply)
        self.assertIn("no database", reply["error"]["message"])

    def test_errors_before_a_response_fail_the_call(self):
        r = self.loaded("""
            async def app(scope, receive, send):
                if scope["type"] != "http":
                    return
                if scope["path"].endswith("/boom"):
                    raise ValueError("broken route")
        """)
        error = self.failure(r, http(path="/boom"))
        self.assertEqual(error["type"], "ValueError")
        self.assertIn("broken route", error["traceback"])
        self.assertNotIn("kumo_apps", error["traceback"])
        error = self.failure(r, http(path="/silent"))
        self.assertIn("without sending a response", error["message"])

    def test_an_event_that_is_not_http_is_refused_clearly(self):
        r = self.loaded(ASGI_ECHO)
        error = self.failure(r, {"name": "x"})
        self.assertIn("web application", error["message"])

    def test_plain_async_handlers_are_not_apps(self):
        r = self.loaded("""
            async def handler(event, context):
                return {"ok": event}
        """)
        self.assertEqual(self.output(r, 5), {"ok": 5})


WSGI_ECHO = """
import json

def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    info = {k: v for k, v in environ.items() if isinstance(v, str)}
    info["body"] = body.decode()
    info["request_id"] = environ["kumo.context"].request_id
    start_response("202 Accepted", [("Content-Type", "application/json"),
                                    ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    return [json.dumps(info).encode()]
"""


class TestWsgi(RunnerTestCase):
    def test_environ_and_response(self):
        r = self.loaded(WSGI_ECHO)
        event = http("PUT", "/a b/c", "q=1", {"host": "example.org",
                                              "content-type": "text/plain",
                                              "x-forwarded-proto": "https",
                                              "x-forwarded-for": "6.6.6.6",
                                              "x-user_id": "spoofed",
                                              "x-custom": "v"}, "payload")
        event["sourceIp"] = "10.0.0.7"
        out = self.output(r, event)
        self.assertEqual(out["statusCode"], 202)
        self.assertEqual(out["headers"]["set-cookie"], ["a=1", "b=2"])
        import json
        env = json.loads(out["body"])
        self.assertEqual(env["REQUEST_METHOD"], "PUT")
        self.assertEqual(env["SCRIPT_NAME"], "/fn/demo/app")
        self.assertEqual(env["PATH_INFO"], "/a b/c")
        self.assertEqual(env["QUERY_STRING"], "q=1")
        self.assertEqual(env["CONTENT_TYPE"], "text/plain")
        self.assertEqual(env["CONTENT_LENGTH"], "7")
        self.assertEqual(env["HTTP_X_CUSTOM"], "v")
        self.assertEqual(env["SERVER_NAME"], "example.org")
        self.assertEqual(env["SERVER_PORT"], "443")
        self.assertEqual(env["wsgi.url_scheme"], "https")
        self.assertEqual(env["body"], "payload")
        self.assertEqual(env["REMOTE_ADDR"], "10.0.0.7", "the server's view, not x-forwarded-for")
        self.assertNotIn("HTTP_X_USER_ID", env, "a header with '_' is left out")
        self.assertTrue(env["request_id"].startswith("run-"))

    def test_an_object_with_wsgi_app_and_close_is_served(self):
        r = self.loaded("""
            closed = []

            class Result:
                def __iter__(self):
                    return iter([b"he", b"llo"])
                def close(self):
                    closed.append(1)

            class Flaskish:
                def wsgi_app(self, environ, start_response):
                    start_response("200 OK", [("X-Closed", str(len(closed)))])
                    return Result()
                def __call__(self, environ, start_response):
                    return self.wsgi_app(environ, start_response)

            app = Flaskish()
        """)
        out = self.output(r, http())
        self.assertEqual(out["body"], "hello")
        self.assertEqual(out["headers"]["x-closed"], "0")
        self.assertEqual(self.output(r, http())["headers"]["x-closed"], "1")

    def test_missing_start_response_fails_the_call(self):
        r = self.loaded("""
            def app(environ, start_response):
                return [b"no status"]
        """)
        error = self.failure(r, http())
        self.assertIn("start_response", error["message"])


class TestLoadPaths(RunnerTestCase):
    def test_extra_paths_are_importable_after_the_code(self):
        extra = tempfile.mkdtemp(prefix="kumo-layer-test-")
        self.addCleanup(shutil.rmtree, extra, True)
        with open(os.path.join(extra, "layerdep.py"), "w") as f:
            f.write("VALUE = 'from the layer'\n")
        with open(os.path.join(extra, "shadow.py"), "w") as f:
            f.write("VALUE = 'layer'\n")
        r = self.start({"main.py": "import layerdep, shadow\n"
                                   "def handler(e):\n    return [layerdep.VALUE, shadow.VALUE]\n",
                        "shadow.py": "VALUE = 'code'\n"})
        r.hello()
        r.send({"type": "load", "code_dir": r.dir, "entrypoint": "main.py", "handler": "handler",
                "paths": [extra]})
        self.assertEqual(r.recv(), {"type": "loaded"})
        self.assertEqual(self.output(r), ["from the layer", "code"])


if __name__ == "__main__":
    unittest.main()
