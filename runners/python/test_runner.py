"""Tests for the Kumo Python runner (kumo_runner.py) and syntax checker (kumo_check.py).

Run from the repository root:

    /usr/bin/python3.11 -m unittest discover -s runners/python -p 'test_*.py'

Every test starts the real runner the way the host does: `python3.11 -I -S -u
kumo_runner.py` with the channel (one end of a socketpair) on fd 3 and the
logs on stdout/stderr pipes.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "kumo_runner.py")
CHECKER = os.path.join(HERE, "kumo_check.py")
PYTHON = "/usr/bin/python3.11" if os.path.exists("/usr/bin/python3.11") else sys.executable
MAX_FRAME = 16 * 1024 * 1024
TIMEOUT = 10


def _drain(stream, sink):
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        sink += chunk
    stream.close()


class Runner:
    """One runner process, started exactly as the host starts it."""

    def __init__(self, files=None):
        self.dir = tempfile.mkdtemp(prefix="kumo-runner-test-")
        for name, source in (files or {}).items():
            path = os.path.join(self.dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(source))
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_fd = child.fileno()

        def put_channel_on_fd3():
            if child_fd == 3:
                os.set_inheritable(3, True)
            else:
                os.dup2(child_fd, 3)  # dup2 leaves the new descriptor inheritable

        # close_fds=False: the fds the test holds are non-inheritable anyway
        # (PEP 446); with close_fds=True the freshly dup'ed fd 3 would be closed
        # after preexec_fn runs.
        self.proc = subprocess.Popen([PYTHON, "-I", "-S", "-u", RUNNER],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=False,
                                     preexec_fn=put_channel_on_fd3)
        child.close()
        self.sock = host
        self.sock.settimeout(TIMEOUT)
        self.out, self.err = bytearray(), bytearray()
        self.threads = [threading.Thread(target=_drain, args=(self.proc.stdout, self.out), daemon=True),
                        threading.Thread(target=_drain, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self.threads:
            t.start()
        self.seq = 0

    # -- framing
    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        payload = json.dumps(obj).encode("utf-8")
        self.send_raw(len(payload).to_bytes(4, "big") + payload)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("channel closed by the runner; stderr: %r" % bytes(self.err))
            buf += chunk
        return bytes(buf)

    def recv(self):
        size = int.from_bytes(self._recv_exact(4), "big")
        return json.loads(self._recv_exact(size).decode("utf-8"))

    # -- messages
    def hello(self):
        msg = self.recv()
        assert msg["type"] == "hello", msg
        return msg

    def load(self, entrypoint="main.py", handler="handler", hello=True):
        if hello:
            self.hello()
        self.send({"type": "load", "code_dir": self.dir, "entrypoint": entrypoint, "handler": handler})
        return self.recv()

    def invoke(self, event=None, context=None, rid=None):
        self.seq += 1
        rid = rid or "run-%d" % self.seq
        ctx = {"function_name": "hello", "version": 3, "memory_limit_mb": 128,
               "deadline_ms": int(time.time() * 1000) + 30000}
        ctx.update(context or {})
        self.send({"type": "invoke", "id": rid, "event": event, "context": ctx})
        reply = self.recv()
        assert reply["type"] == "result" and reply["id"] == rid, reply
        return reply

    # -- end
    def wait(self, timeout=TIMEOUT):
        rc = self.proc.wait(timeout)
        for t in self.threads:
            t.join(timeout)
        return rc

    def finish(self):
        """Close the channel (EOF) and return (exit code, stdout, stderr)."""
        self.sock.close()
        rc = self.wait()
        return rc, bytes(self.out).decode("utf-8", "replace"), bytes(self.err).decode("utf-8", "replace")

    def cleanup(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self.threads:
            t.join(TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


class RunnerTestCase(unittest.TestCase):
    def start(self, files=None):
        r = Runner(files)
        self.addCleanup(r.cleanup)
        return r

    def loaded(self, source, files=None, handler="handler", entrypoint="main.py"):
        all_files = {entrypoint: source}
        all_files.update(files or {})
        r = self.start(all_files)
        reply = r.load(entrypoint, handler)
        self.assertEqual(reply, {"type": "loaded"}, reply)
        return r

    def output(self, r, event=None, **kw):
        reply = r.invoke(event, **kw)
        self.assertTrue(reply["ok"], reply)
        return reply["output"]

    def failure(self, r, event=None, **kw):
        reply = r.invoke(event, **kw)
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(set(reply), {"type", "id", "ok", "error"})
        self.assertEqual(set(reply["error"]), {"type", "message", "traceback"})
        return reply["error"]


class TestStartAndLoad(RunnerTestCase):
    def test_hello(self):
        r = self.start()
        msg = r.hello()
        self.assertEqual(msg, {"type": "hello", "protocol": 1, "runtime": "python",
                               "runtime_version": "%d.%d.%d" % sys.version_info[:3]})

    def test_load_success(self):
        r = self.loaded("def handler(event):\n    return 1\n")
        self.assertEqual(self.output(r), 1)

    def test_load_is_pipelined(self):
        # The host may write load and invoke before it has read hello.
        r = self.start({"main.py": "def handler(event):\n    return event * 2\n"})
        r.send({"type": "load", "code_dir": r.dir, "entrypoint": "main.py", "handler": "handler"})
        r.send({"type": "invoke", "id": "a", "event": 21, "context": {}})
        self.assertEqual(r.recv()["type"], "hello")
        self.assertEqual(r.recv(), {"type": "loaded"})
        self.assertEqual(r.recv(), {"type": "result", "id": "a", "ok": True, "output": 42})

    def test_load_env_is_set_before_the_module_runs(self):
        r = self.start({"main.py": "import os\nAT_IMPORT = os.environ.get('GREETING')\n"
                                   "def handler(event):\n    return [AT_IMPORT, os.environ['KUMO_FUNCTION']]\n"})
        r.hello()
        r.send({"type": "load", "code_dir": r.dir, "entrypoint": "main.py", "handler": "handler",
                "env": {"GREETING": "hi there", "KUMO_FUNCTION": "hello"}})
        self.assertEqual(r.recv(), {"type": "loaded"})
        self.assertEqual(self.output(r), ["hi there", "hello"])

    def test_load_env_must_be_strings(self):
        for env in ([], {"A": 1}, {"": "x"}, {"A=B": "x"}):
            r = self.start({"main.py": "def handler(event):\n    return 1\n"})
            r.hello()
            r.send({"type": "load", "code_dir": r.dir, "entrypoint": "main.py",
                    "handler": "handler", "env": env})
            rc, _, err = r.finish()
            self.assertEqual(rc, 2, env)
            self.assertIn("kumo-runner: protocol error: load field env", err)

    def test_syntax_error(self):
        r = self.start({"main.py": "x = 1\n\ndef f(:\n    pass\n"})
        reply = r.load()
        self.assertEqual(reply["type"], "load_error")
        err = reply["error"]
        self.assertEqual(err["type"], "SyntaxError")
        self.assertIn("main.py", err["message"])
        self.assertIn("line 3", err["message"])
        self.assertIn("def f(:", err["traceback"])
        self.assertNotIn("kumo_runner", err["traceback"])
        self.assertNotIn("importlib", err["traceback"])

    def test_syntax_error_in_imported_module(self):
        r = self.start({"main.py": "import helpers\ndef handler(e):\n    pass\n",
                        "helpers.py": "def broken(\n"})
        err = r.load()["error"]
        self.assertEqual(err["type"], "SyntaxError")
        self.assertIn("helpers.py", err["message"])

    def test_missing_handler(self):
        r = self.start({"main.py": "def main(event):\n    return 1\n"})
        reply = r.load()
        self.assertEqual(reply, {"type": "load_error", "error": {
            "type": "HandlerNotFound",
            "message": "main.py has no attribute 'handler' (define handler(event, context), "
                       "or an ASGI/WSGI app)",
            "traceback": ""}})

    def test_handler_not_callable(self):
        r = self.start({"main.py": "handler = {'a': 1}\n"})
        err = r.load()["error"]
        self.assertEqual(err["type"], "HandlerNotCallable")
        self.assertIn("'handler'", err["message"])

    def test_import_error(self):
        r = self.start({"main.py": "import os\nimport no_such_module_kumo\n\ndef handler(e):\n    pass\n"})
        err = r.load()["error"]
        self.assertEqual(err["type"], "ModuleNotFoundError")
        self.assertEqual(err["message"], "No module named 'no_such_module_kumo'")
        self.assertIn('main.py", line 2', err["traceback"])
        self.assertNotIn("kumo_runner", err["traceback"])
        self.assertNotIn("<frozen", err["traceback"])

    def test_exception_and_exit_at_import(self):
        r = self.start({"main.py": "print('booting')\nraise RuntimeError('no config')\n"})
        err = r.load()["error"]
        self.assertEqual((err["type"], err["message"]), ("RuntimeError", "no config"))
        r2 = self.start({"main.py": "import sys\nsys.exit(4)\n"})
        err = r2.load()["error"]
        self.assertEqual(err["type"], "SystemExit")
        self.assertIn("exit(4)", err["message"])
        rc, out, _ = r.finish()
        self.assertEqual(rc, 0)
        self.assertEqual(out, "booting\n")

    def test_missing_entrypoint(self):
        r = self.start({"other.py": ""})
        err = r.load()["error"]
        self.assertEqual(err["type"], "EntrypointNotFound")

    def test_runner_waits_after_load_error_and_second_load_is_fatal(self):
        r = self.start({"main.py": "x = 1\n"})
        self.assertEqual(r.load()["type"], "load_error")
        # Still waiting for the host: it reads the next message and says why
        # that one is fatal (had it exited, it would not have read it).
        r.send({"type": "load", "code_dir": r.dir, "entrypoint": "main.py", "handler": "x"})
        self.assertEqual(r.wait(), 2)
        self.assertIn("second load", bytes(r.err).decode())

    def test_dotted_handler_and_callable_object(self):
        src = """
            class Api:
                def __init__(self):
                    self.calls = 0
                def handle(self, event, context):
                    self.calls += 1
                    return [event, context.request_id, self.calls]
            api = Api()

            class Callable:
                def __call__(self, event):
                    return {"called": event}
            obj = Callable()
        """
        r = self.loaded(src, handler="api.handle")
        self.assertEqual(self.output(r, "x", rid="r1"), ["x", "r1", 1])
        r = self.loaded(src, handler="obj")
        self.assertEqual(self.output(r, 5), {"called": 5})

    def test_self_import_local_import_and_cwd(self):
        src = """
            import helpers
            import main                 # importing itself gives the same module
            from data_loader import load
            assert main.__name__ == "main"
            def handler(event):
                return [helpers.double(event), main is __import__("sys").modules["main"], load()]
        """
        r = self.loaded(src, files={"helpers.py": "def double(x):\n    return 2 * x\n",
                                    "data_loader.py": "def load():\n    return open('data.txt').read()\n",
                                    "data.txt": "from cwd"})
        self.assertEqual(self.output(r, 4), [8, True, "from cwd"])

    def test_nested_entrypoint_with_relative_import(self):
        r = self.start({"pkg/app.py": "from .util import VALUE\nfrom . import util\n"
                                      "def handler(e):\n    return [__name__, VALUE, util.VALUE]\n",
                        "pkg/util.py": "VALUE = 7\n"})
        self.assertEqual(r.load("pkg/app.py"), {"type": "loaded"})
        self.assertEqual(self.output(r), ["pkg.app", 7, 7])

    def test_package_entrypoint_and_invalid_entrypoints(self):
        r = self.start({"pkg/__init__.py": "from . import sub\ndef handler(e):\n    return [__name__, sub.X]\n",
                        "pkg/sub.py": "X = 1\n"})
        self.assertEqual(r.load("pkg/__init__.py"), {"type": "loaded"})
        self.assertEqual(self.output(r), ["pkg", 1])
        for entry in ("../main.py", "/etc/passwd", "main.txt"):
            with self.subTest(entrypoint=entry):
                r = self.start({"main.txt": ""})
                self.assertEqual(r.load(entry)["error"]["type"], "InvalidEntrypoint")

    def test_async_generator_handler_rejected(self):
        r = self.start({"main.py": "async def handler(e):\n    yield 1\n"})
        err = r.load()["error"]
        self.assertEqual(err["type"], "HandlerNotSupported")


class TestInvoke(RunnerTestCase):
    def test_arity(self):
        src = """
            import functools
            def one(event):
                return ["one", event]
            def two(event, context):
                return ["two", event, context.request_id]
            def defaulted(event, context=None):
                return ["defaulted", context is not None]
            def varargs(*args):
                return ["varargs", len(args)]
            def zero():
                return "zero"
            def deco(fn):
                @functools.wraps(fn)
                def wrapper(*args, **kwargs):
                    return fn(*args, **kwargs)
                return wrapper
            @deco
            def wrapped(event):
                return ["wrapped", event]
            class K:
                @classmethod
                def cm(cls, event):
                    return ["cm", event]
            cm = K.cm
            def three(prefix, event, context):
                return [prefix, event, context.request_id]
            part = functools.partial(three, "bound")
            part_one = functools.partial(two, "bound")
        """
        cases = {"one": ["one", 1], "two": ["two", 1, "rid"], "defaulted": ["defaulted", True],
                 "varargs": ["varargs", 2], "zero": "zero", "wrapped": ["wrapped", 1],
                 "cm": ["cm", 1], "part": ["bound", 1, "rid"],
                 "part_one": ["two", "bound", AttributeError]}
        for name, expected in cases.items():
            with self.subTest(handler=name):
                r = self.loaded(src, handler=name)
                if expected[-1] is AttributeError:  # partial(two, x) takes one more argument only
                    self.assertEqual(self.failure(r, 1)["type"], "AttributeError")
                    continue
                self.assertEqual(self.output(r, 1, rid="rid"), expected)

    def test_context(self):
        src = """
            import os
            def handler(event, context):
                return {
                    "request_id": context.request_id,
                    "function_name": context.function_name,
                    "version": context.version,
                    "memory_limit_mb": context.memory_limit_mb,
                    "env_is_environ": context.env is os.environ,
                    "remaining": context.remaining_time_ms(),
                    "remaining_type": type(context.remaining_time_ms()).__name__,
                    "has_dict": hasattr(context, "__dict__"),
                }
        """
        r = self.loaded(src)
        now = int(time.time() * 1000)
        out = self.output(r, rid="0193-abc", context={
            "function_name": "fn", "version": 7, "memory_limit_mb": 256, "deadline_ms": now + 5000})
        rem = out.pop("remaining")
        self.assertEqual(out, {"request_id": "0193-abc", "function_name": "fn", "version": 7,
                               "memory_limit_mb": 256, "env_is_environ": True,
                               "remaining_type": "int", "has_dict": False})
        self.assertTrue(3000 < rem <= 5000, rem)
        out = self.output(r, context={"deadline_ms": now - 1000})
        self.assertEqual(out["remaining"], 0)

    def test_async_handler_reuses_one_loop(self):
        src = """
            import asyncio
            loops = []
            lock = None
            async def handler(event):
                global lock
                if lock is None:
                    lock = asyncio.Lock()   # bound to the loop on first use
                async with lock:
                    await asyncio.sleep(0.001)
                loops.append(id(asyncio.get_running_loop()))
                return [event, len(loops), len(set(loops))]
        """
        r = self.loaded(src)
        self.assertEqual(self.output(r, "a"), ["a", 1, 1])
        self.assertEqual(self.output(r, "b"), ["b", 2, 1])
        self.assertEqual(self.output(r, "c"), ["c", 3, 1])

    def test_sync_handler_returning_awaitable(self):
        src = """
            import asyncio
            async def work(x):
                await asyncio.sleep(0)
                return x + 1
            def handler(event):
                return work(event)
        """
        r = self.loaded(src)
        self.assertEqual(self.output(r, 1), 2)

    def test_return_mappings(self):
        src = """
            def handler(event):
                kind = event
                if kind == "response":
                    return {"statusCode": 201, "headers": {"x-a": "b"}, "body": "made"}
                if kind == "dict":
                    return {"a": [1, 2.5, None, True]}
                if kind == "list":
                    return [1, "two"]
                if kind == "tuple":
                    return (1, 2)
                if kind == "str":
                    return "hello"
                if kind == "unicode":
                    return "h\u00e9llo \u96f2 \U0001f600"
                if kind == "none":
                    return None
                if kind == "bytes":
                    return b"\\x00\\x01binary\\xff"
                if kind == "bytearray":
                    return bytearray(b"ab")
                if kind == "bytes-body":
                    return {"statusCode": 200, "headers": {"content-type": "image/png"}, "body": b"\\x89PNG"}
        """
        r = self.loaded(src)
        self.assertEqual(self.output(r, "response"),
                         {"statusCode": 201, "headers": {"x-a": "b"}, "body": "made"})
        self.assertEqual(self.output(r, "dict"), {"a": [1, 2.5, None, True]})
        self.assertEqual(self.output(r, "list"), [1, "two"])
        self.assertEqual(self.output(r, "tuple"), [1, 2])
        self.assertEqual(self.output(r, "str"), "hello")
        self.assertEqual(self.output(r, "unicode"), "h\u00e9llo \u96f2 \U0001f600")
        reply = r.invoke("none")
        self.assertEqual(reply, {"type": "result", "id": reply["id"], "ok": True, "output": None})
        self.assertEqual(self.output(r, "bytes"), {
            "statusCode": 200, "headers": {"content-type": "application/octet-stream"},
            "body": "AAFiaW5hcnn/", "isBase64Encoded": True})
        self.assertEqual(self.output(r, "bytearray")["body"], "YWI=")
        self.assertEqual(self.output(r, "bytes-body"), {
            "statusCode": 200, "headers": {"content-type": "image/png"},
            "body": "iVBORw==", "isBase64Encoded": True})

    def test_output_is_compact_utf8(self):
        r = self.loaded("def handler(e):\n    return {'k': ['\u00e9', 1]}\n")
        r.send({"type": "invoke", "id": "x", "event": None, "context": {}})
        size = int.from_bytes(r._recv_exact(4), "big")
        raw = r._recv_exact(size)
        self.assertEqual(raw, '{"type":"result","id":"x","ok":true,"output":{"k":["\u00e9",1]}}'.encode())

    def test_exception_traceback(self):
        src = """
            def helper(x):
                return x / 0

            def handler(event):
                return helper(event)
        """
        r = self.loaded(src)
        err = self.failure(r, 1)
        self.assertEqual(err["type"], "ZeroDivisionError")
        self.assertEqual(err["message"], "division by zero")
        tb = err["traceback"]
        self.assertTrue(tb.startswith("Traceback (most recent call last):\n"), tb)
        self.assertIn('main.py", line 6, in handler', tb)
        self.assertIn('main.py", line 3, in helper', tb)
        self.assertIn("return x / 0", tb)
        self.assertTrue(tb.rstrip().endswith("ZeroDivisionError: division by zero"), tb)
        self.assertNotIn("kumo_runner", tb)
        # the runner keeps serving
        self.assertTrue(r.invoke(1)["ok"] is False)

    def test_async_exception_traceback(self):
        src = """
            import asyncio
            async def handler(event):
                await asyncio.sleep(0)
                raise ValueError("bad " + event)
        """
        r = self.loaded(src)
        err = self.failure(r, "input")
        self.assertEqual((err["type"], err["message"]), ("ValueError", "bad input"))
        self.assertIn('main.py", line 5, in handler', err["traceback"])
        self.assertNotIn("kumo_runner", err["traceback"])
        self.assertNotIn("asyncio", err["traceback"])

    def test_wrong_arity_error_has_no_runner_frames(self):
        r = self.loaded("class H:\n    def __init__(self, a):\n        pass\n", handler="H")
        err = self.failure(r)
        self.assertEqual(err["type"], "TypeError")
        self.assertNotIn("kumo_runner", err["traceback"])

    def test_unserializable(self):
        src = """
            def handler(event):
                if event == "set":
                    return {1, 2}
                if event == "nan":
                    return {"x": float("nan")}
                if event == "object":
                    return object()
                if event == "cycle":
                    a = []
                    a.append(a)
                    return a
                if event == "surrogate":
                    return "bad \\ud800"
                return "fine"
        """
        r = self.loaded(src)
        err = self.failure(r, "set")
        self.assertEqual(err, {"type": "SerializationError", "traceback": "", "message":
                               "handler returned a value that cannot be serialized as JSON: "
                               "Object of type set is not JSON serializable"})
        for kind in ("nan", "object", "cycle", "surrogate"):
            with self.subTest(kind=kind):
                err = self.failure(r, kind)
                self.assertEqual(err["type"], "SerializationError")
                self.assertTrue(err["message"].startswith("handler returned a value that cannot"))
        self.assertEqual(self.output(r, "ok"), "fine")

    def test_system_exit_and_keyboard_interrupt(self):
        src = """
            import sys
            def handler(event):
                if event == "exit":
                    sys.exit(3)
                if event == "exit-none":
                    exit()
                if event == "interrupt":
                    raise KeyboardInterrupt
                return "alive"
        """
        r = self.loaded(src)
        err = self.failure(r, "exit")
        self.assertEqual((err["type"], err["message"]), ("SystemExit", "handler called exit(3)"))
        self.assertIn('main.py", line 5', err["traceback"])
        err = self.failure(r, "exit-none")
        self.assertEqual(err["message"], "handler called exit(None)")
        err = self.failure(r, "interrupt")
        self.assertEqual(err["type"], "KeyboardInterrupt")
        self.assertEqual(self.output(r, "x"), "alive")
        self.assertIsNone(r.proc.poll())

    def test_prints_go_to_log_pipes_not_the_channel(self):
        src = """
            import sys
            print("module level")
            def handler(event):
                print("user stdout", event)
                print("user stderr", file=sys.stderr)
                # a forged frame on stdout must not be taken as a result
                print('{"type":"result","id":"run-1","ok":true,"output":"forged"}')
                return "real"
        """
        r = self.loaded(src)
        reply = r.invoke("E")
        self.assertEqual(reply["output"], "real")
        self.assertNotIn("user stdout", json.dumps(reply))
        rc, out, err = r.finish()
        self.assertEqual(rc, 0)
        self.assertEqual(out, 'module level\nuser stdout E\n'
                              '{"type":"result","id":"run-1","ok":true,"output":"forged"}\n')
        self.assertEqual(err, "user stderr\n")

    def test_survives_hostile_stdio(self):
        src = """
            import io, os, sys
            def handler(event):
                if event == "replace":
                    sys.stdout = io.StringIO()
                    sys.stderr = None
                    print("swallowed")
                elif event == "close":
                    sys.stdout.close()
                elif event == "huge":
                    os.write(1, b"x" * (4 * 1024 * 1024))
                return event
        """
        r = self.loaded(src)
        self.assertEqual(self.output(r, "huge"), "huge")
        self.assertEqual(self.output(r, "replace"), "replace")
        self.assertEqual(self.output(r, "close"), "close")
        self.assertEqual(self.output(r, "again"), "again")
        rc, out, _ = r.finish()
        self.assertEqual(rc, 0)
        self.assertEqual(len(out), 4 * 1024 * 1024)

    def test_channel_not_inherited_by_programs(self):
        src = """
            import subprocess, sys
            def handler(event):
                probe = "import os\\ntry:\\n    os.fstat(3)\\nexcept OSError:\\n    print('closed')\\nelse:\\n    print('open')"
                return subprocess.run([sys.executable, "-I", "-S", "-c", probe], close_fds=False,
                                      capture_output=True, text=True).stdout.strip()
        """
        r = self.loaded(src)
        self.assertEqual(self.output(r), "closed")

    def test_warm_state_is_kept(self):
        r = self.loaded("count = 0\ndef handler(event):\n    global count\n    count += 1\n    return count\n")
        self.assertEqual([self.output(r) for _ in range(5)], [1, 2, 3, 4, 5])

    def test_forked_child_does_not_answer(self):
        src = """
            import os
            def handler(event):
                if event == "fork":
                    pid = os.fork()
                    if pid:
                        os.waitpid(pid, 0)
                    return "child" if pid == 0 else "parent"
                return event
        """
        r = self.loaded(src)
        self.assertEqual(self.output(r, "fork"), "parent")
        self.assertEqual(self.output(r, "next"), "next")

    def test_big_frames_and_short_reads(self):
        r = self.loaded("def handler(event):\n    return event if isinstance(event, str) else 'x' * event\n")
        # an incoming frame of exactly the maximum size is accepted
        head = '{"type":"invoke","id":"big","context":{},"event":"'
        body = "y" * (MAX_FRAME - len(head) - 2)
        frame = (head + body + '"}').encode()
        self.assertEqual(len(frame), MAX_FRAME)
        r.send_raw(len(frame).to_bytes(4, "big") + frame)
        reply = r.recv()
        self.assertEqual((reply["id"], len(reply["output"])), ("big", len(body)))
        # a large result is written completely (partial writes)
        self.assertEqual(len(self.output(r, 10 * 1024 * 1024)), 10 * 1024 * 1024)
        # a result over the frame limit becomes an error
        err = self.failure(r, MAX_FRAME)
        self.assertEqual(err["type"], "OutputTooLarge")
        # a frame arriving in small pieces
        payload = json.dumps({"type": "invoke", "id": "slow", "event": "s", "context": {}}).encode()
        data = len(payload).to_bytes(4, "big") + payload
        for i in range(0, len(data), 7):
            r.send_raw(data[i:i + 7])
            time.sleep(0.001)
        self.assertEqual(r.recv()["output"], "s")


class TestProtocolErrors(RunnerTestCase):
    def test_eof_exits_zero(self):
        r = self.start()
        r.hello()
        # finish() awaits the exit (failing after TIMEOUT): no clock needed.
        rc, out, err = r.finish()
        self.assertEqual((rc, out, err), (0, "", ""))

    def test_eof_after_load_with_user_thread(self):
        # a non-daemon thread started by user code must not keep the runner alive
        r = self.loaded("import threading, time\n"
                        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
                        "def handler(e):\n    return 1\n")
        self.assertEqual(self.output(r), 1)
        self.assertEqual(r.finish()[0], 0)

    def test_oversized_frame(self):
        r = self.start()
        r.hello()
        r.send_raw((MAX_FRAME + 1).to_bytes(4, "big"))
        self.assertEqual(r.wait(), 2)
        self.assertIn("exceeds", bytes(r.err).decode())
        self.assertEqual(bytes(r.out), b"")

    def test_unknown_message_type(self):
        r = self.start()
        r.hello()
        r.send({"type": "reboot"})
        self.assertEqual(r.wait(), 2)
        self.assertIn("unknown message type 'reboot'", bytes(r.err).decode())

    def test_invalid_json_and_invoke_before_load(self):
        r = self.start()
        r.hello()
        r.send_raw(b"\x00\x00\x00\x03{x}")
        self.assertEqual(r.wait(), 2)
        r = self.start()
        r.hello()
        r.send_raw(len(b"[" * 100000).to_bytes(4, "big") + b"[" * 100000)  # too deep to decode
        self.assertEqual(r.wait(), 2)
        r = self.start()
        r.hello()
        r.send({"type": "invoke", "id": "1", "event": None, "context": {}})
        self.assertEqual(r.wait(), 2)
        self.assertIn("before a successful load", bytes(r.err).decode())


class TestRunnerInternals(unittest.TestCase):
    def test_startup_imports_are_lean(self):
        code = ("import sys; sys.path.insert(0, %r); import kumo_runner; "
                "print(sorted(m for m in ('json', 're', 'enum', 'asyncio', 'traceback', 'importlib.util') "
                "if m in sys.modules))" % HERE)
        p = subprocess.run([PYTHON, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "[]"), p.stderr)

    def test_fast_json_matches_json_module(self):
        sys.path.insert(0, HERE)
        try:
            import kumo_runner
        finally:
            sys.path.remove(HERE)
        dumps = lambda v: json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        values = [None, True, False, 0, -1, 2 ** 70, 1.5, -0.0, 1e300, 1e-7, "", "a\"b\\c\n\t\x00\x1f\u2028",
                  "\u00e9\u96f2\U0001f600", [], {}, [1, [2, [3]]], {"k": {"n": [None]}}, (1, 2),
                  {1: "int key", 2.5: "float key", True: "bool key", None: "none key"}]
        for v in values:
            with self.subTest(value=v):
                self.assertEqual(kumo_runner._encode(v), dumps(v))
                text = " \n" + json.dumps(v) + "\t "
                self.assertEqual(kumo_runner._decode(text), json.loads(text))
        cyclic = []
        cyclic.append(cyclic)
        for bad in ({1, 2}, object(), float("nan"), float("inf"), {(1, 2): 1}, cyclic):
            with self.subTest(bad=repr(bad)[:20]):
                with self.assertRaises((TypeError, ValueError)) as expected:
                    dumps(bad)
                with self.assertRaises(type(expected.exception)) as got:
                    kumo_runner._encode(bad)
                self.assertEqual(str(got.exception), str(expected.exception))
        self.assertEqual(kumo_runner._encode(["ok"]), '["ok"]')  # no stale circular markers
        for bad in ("", "   ", "{", "[1,]", '{"a":1} x', "nul", '"\x01"', "NaN x"):
            with self.subTest(bad_json=bad):
                self.assertRaises(ValueError, kumo_runner._decode, bad)
        self.assertTrue(kumo_runner._decode("NaN") != kumo_runner._decode("NaN"))


class TestChecker(unittest.TestCase):
    def check(self, files, raw=None):
        data = raw if raw is not None else json.dumps({"files": files}).encode()
        p = subprocess.run([PYTHON, "-I", "-S", CHECKER], input=data, capture_output=True, timeout=TIMEOUT)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def result(self, files):
        rc, out, err = self.check(files)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def test_ok(self):
        self.assertEqual(self.result({"main.py": "def handler(e):\n    return e\n",
                                      "lib/x.py": "X = 1\n", "README.md": "def (("}), {"ok": True})

    def test_syntax_error(self):
        self.assertEqual(self.result({"main.py": "x = 1\n\ndef f(:\n    pass\n"}), {
            "ok": False, "file": "main.py", "line": 3, "column": 7,
            "message": "invalid syntax", "text": "def f(:"})

    def test_indentation_and_tab_errors(self):
        res = self.result({"main.py": "def f():\nreturn 1\n"})
        self.assertEqual((res["ok"], res["line"]), (False, 2))
        self.assertIn("indented block", res["message"])
        res = self.result({"main.py": "if True:\n\tx = 1\n        y = 2\n"})
        self.assertEqual((res["ok"], res["line"]), (False, 3))
        self.assertIn("indentation", res["message"])

    def test_compile_stage_error(self):
        res = self.result({"main.py": "return 5\n"})
        self.assertEqual((res["ok"], res["message"], res["line"]), (False, "'return' outside function", 1))

    def test_first_error_in_sorted_order(self):
        res = self.result({"z.py": "(", "b/a.py": "def :", "a.py": "ok = 1\n"})
        self.assertEqual(res["file"], "b/a.py")

    def test_null_bytes(self):
        res = self.result({"main.py": "x = 1\x00\n"})
        self.assertEqual((res["ok"], res["file"], res["line"], res["column"]), (False, "main.py", None, None))
        self.assertIn("null bytes", res["message"])

    def test_nothing_is_executed(self):
        marker = os.path.join(tempfile.gettempdir(), "kumo-check-marker-%d" % os.getpid())
        src = "print('side effect')\nopen(%r, 'w').write('x')\nimport no_such_module\n" % marker
        rc, out, err = self.check({"main.py": src})
        self.assertEqual((rc, json.loads(out)), (0, {"ok": True}))
        self.assertFalse(os.path.exists(marker))
        self.assertNotIn("side effect", out + err)

    def test_malformed_input(self):
        for raw in (b"not json", b"[]", b'{"files": {"a.py": 1}}', b'{"nofiles": {}}'):
            with self.subTest(raw=raw):
                rc, out, err = self.check(None, raw=raw)
                self.assertEqual((rc, out), (1, ""))
                self.assertIn("malformed input", err)


if __name__ == "__main__":
    unittest.main()


class TestCheckerDirectory(unittest.TestCase):
    """`kumo_check.py DIR`: how Kumo runs the checker, in a sandbox."""

    def run_on(self, files):
        with tempfile.TemporaryDirectory() as root:
            for path, source in files.items():
                full = os.path.join(root, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "wb") as f:
                    f.write(source if isinstance(source, bytes) else source.encode())
            p = subprocess.run([PYTHON, "-I", "-S", CHECKER, root], capture_output=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 0, p.stderr)
            return json.loads(p.stdout)

    def test_clean_tree(self):
        self.assertEqual(self.run_on({"main.py": "x = 1\n", "lib/util.py": "y = 2\n", "README": "("}), {"ok": True})

    def test_first_error_with_relative_path(self):
        result = self.run_on({"main.py": "x = 1\n", "pkg/bad.py": "def f(:\n    pass\n"})
        self.assertFalse(result["ok"])
        self.assertEqual(result["file"], os.path.join("pkg", "bad.py"))
        self.assertEqual(result["line"], 1)

    def test_not_utf8(self):
        result = self.run_on({"main.py": b"\xff\xfe = 1\n"})
        self.assertFalse(result["ok"])
        self.assertIn("UTF-8", result["message"])
