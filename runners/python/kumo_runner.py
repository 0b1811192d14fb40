"""Kumo Python runner (runner protocol v1).

Started by the Kumo host inside the sandbox as

    python3.11 -I -S -u kumo_runner.py

with fd 0 = /dev/null, fd 1 / fd 2 = the invocation's log pipes, and fd 3 =
the channel, a connected AF_UNIX stream socket.  Every message on the channel,
in both directions, is a 4-byte big-endian length followed by that many bytes
of UTF-8 JSON.  The runner never writes protocol data to stdout or stderr and
never writes to stdout at all: stdout belongs to user code.

See docs/runner-protocol.md for the full protocol.

Exit codes: 0 = the host closed the channel; 1 = internal runner failure;
2 = protocol error (a message explaining it was written to stderr).

Startup matters (it is part of every cold start), so only os is imported
here besides modules the interpreter has already loaded (sys, time, builtins,
_json's C code); asyncio, traceback and binascii are imported when first
needed.
"""

import os
import sys
import time

try:  # The very same functions as importlib.util's, already loaded at startup.
    from _frozen_importlib_external import spec_from_file_location
    from _frozen_importlib import module_from_spec
except ImportError:  # pragma: no cover - other interpreters
    from importlib.util import spec_from_file_location, module_from_spec

PROTOCOL_VERSION = 1
CHANNEL_FD = 3
MAX_FRAME = 16 * 1024 * 1024
MAX_MESSAGE_CHARS = 64 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024
NO_DEADLINE_MS = 2147483647

_CO_VARARGS = 0x04
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100
_CO_ASYNC_GENERATOR = 0x200
_MANY = 1 << 20  # "accepts any number of positional arguments"

# Private references: user code may monkeypatch modules, but not these.
_os_read = os.read
_os_readv = getattr(os, "readv", None)
_os_write = os.write
_os_writev = getattr(os, "writev", None)
_os_exit = os._exit
_getpid = os.getpid
_time_ns = time.time_ns


# ---------------------------------------------------------------- JSON
#
# `import json` costs about as much as starting the interpreter (it pulls in
# re and enum), so the runner drives the C accelerator that json itself uses,
# _json, directly: same scanner, same encoder, same results.  If _json is
# missing or behaves differently, the json module is used instead.

def _json_default(o):
    raise TypeError("Object of type %s is not JSON serializable" % (type(o).__name__,))


def _fast_json():
    import _json

    class _ScanContext(object):
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                          "NaN": float("nan")}.__getitem__
        memo = {}

    scan = _json.make_scanner(_ScanContext())
    make_encoder = _json.make_encoder
    encode_str = _json.encode_basestring
    ws = " \t\n\r"

    def encode(value):
        # A fresh encoder per call: its circular-reference markers must start empty.
        return "".join(make_encoder({}, _json_default, encode_str, None, ":", ",",
                                    False, False, False)(value, 0))

    def decode(text):
        start = len(text) - len(text.lstrip(ws))
        try:
            value, end = scan(text, start)
        except StopIteration:
            raise ValueError("Expecting value") from None
        except RecursionError:
            raise
        except Exception:
            # The accelerator reports syntax errors through json.decoder, which
            # is only there once json has been imported: let json say it.
            import json
            return json.loads(text)
        if text[end:].strip(ws):
            raise ValueError("Extra data")
        return value

    sample = '{"a":[1,-2.5,"\u00e9\\"",null,true,{}],"b":""}'
    if encode(decode(" %s\n" % sample)) != sample or encode("x") != '"x"':
        raise ImportError("_json does not behave as expected")
    return encode, decode


try:
    _encode, _decode = _fast_json()
except Exception:  # pragma: no cover - interpreters without a compatible _json
    import json
    _encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    _decode = json.JSONDecoder().decode

_CodeType = type((lambda: 0).__code__)

_PID = _getpid()
_SELF_FILE = (lambda: 0).__code__.co_filename

# Runner state.
_loaded = False          # a load message has been received (successful or not)
_handler = None          # the user's callable, once loaded successfully
_call_style = 2          # 0: handler(); 1: handler(event); 2: handler(event, context)
_code_dir = None
_loop = None             # the one persistent asyncio event loop, created on first need
_asyncio = None
_app = None              # a served ASGI/WSGI app (kumo_apps), when the handler is one
_APPS_DIR = os.path.dirname(os.path.abspath(globals().get("__file__") or _SELF_FILE))
_APPS_FILE = os.path.join(os.path.dirname(_SELF_FILE), "kumo_apps.py")  # as compiled


# ---------------------------------------------------------------- low level

def _flush_std():
    """Flush user-visible streams; never fails (user code may have replaced or closed them)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass


def _stderr(text):
    data = text.encode("utf-8", "replace")
    try:
        while data:
            n = _os_write(2, data)
            data = data[n:]
    except BaseException:
        pass


def _exit(code):
    _flush_std()
    _os_exit(code)


def _fatal(what):
    """Protocol error: explain on stderr and exit 2."""
    _flush_std()
    _stderr("kumo-runner: protocol error: %s\n" % (what,))
    _os_exit(2)


def _read_some(boundary):
    """One read of whatever the channel holds (at most 64 KiB)."""
    try:
        chunk = _os_read(CHANNEL_FD, 65536)
    except (ConnectionResetError, BrokenPipeError):
        _exit(0)  # the host is gone
    except OSError as e:
        _fatal("cannot read from the channel (fd %d): %s" % (CHANNEL_FD, e))
    if not chunk:
        if boundary:
            _shutdown_app()
            _exit(0)  # EOF between frames: the host wants us gone
        _fatal("channel closed in the middle of a frame")
    return chunk


def _read_exact(n):
    """Read exactly n bytes from the channel (short reads are normal on a socket)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            if _os_readv is not None:
                k = _os_readv(CHANNEL_FD, [view[got:]])
            else:  # pragma: no cover
                chunk = _os_read(CHANNEL_FD, n - got)
                k = len(chunk)
                view[got:got + k] = chunk
        except (ConnectionResetError, BrokenPipeError):
            _exit(0)  # the host is gone
        except OSError as e:
            _fatal("cannot read from the channel (fd %d): %s" % (CHANNEL_FD, e))
        if k == 0:
            _fatal("channel closed in the middle of a frame")
        got += k
    return buf


_pending = b""  # bytes read past the end of the last frame


def _read_message():
    # A frame usually arrives whole, so one read takes its length and its
    # payload; only a frame larger than that read is completed exactly.
    global _pending
    head = _pending
    while len(head) < 4:
        head += _read_some(not head)
    size = int.from_bytes(head[:4], "big")
    if size > MAX_FRAME:
        _fatal("incoming frame of %d bytes exceeds the %d byte limit" % (size, MAX_FRAME))
    end = 4 + size
    if len(head) >= end:
        payload = head[4:end]
        _pending = head[end:]
    else:
        payload = head[4:] + _read_exact(end - len(head))
        _pending = b""
    try:
        msg = _decode(payload.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        _fatal("frame is not valid UTF-8 JSON: %s" % (e,))
    if type(msg) is not dict:
        _fatal("frame is not a JSON object")
    return msg


def _send(parts):
    """Write one frame whose payload is the concatenation of the byte strings in parts."""
    if _getpid() != _PID:
        # A process forked by user code came back into the runner: it must not
        # talk on the parent's channel.
        _os_exit(0)
    size = 0
    for p in parts:
        size += len(p)
    parts = [size.to_bytes(4, "big")] + parts
    total = size + 4
    try:
        sent = _os_writev(CHANNEL_FD, parts) if _os_writev is not None else 0
        if sent < total:
            rest = memoryview(b"".join(parts))[sent:]
            while rest:
                n = _os_write(CHANNEL_FD, rest)
                rest = rest[n:]
    except (BrokenPipeError, ConnectionResetError):
        _exit(0)  # the host is gone
    except OSError as e:
        _fatal("cannot write to the channel (fd %d): %s" % (CHANNEL_FD, e))


def _send_obj(obj):
    # Only used for runner-built messages (all strings are ours or exception
    # text); 'replace' turns lone surrogates into '?' so the frame is valid UTF-8.
    _send([_encode(obj).encode("utf-8", "replace")])


# ---------------------------------------------------------------- errors

def _is_internal(filename):
    if filename in (_SELF_FILE, _APPS_FILE) or filename.startswith("<frozen importlib"):
        return True
    aio = sys.modules.get("asyncio")
    if aio is not None:
        path = getattr(aio, "__file__", None)
        if path and filename.startswith(os.path.dirname(path) + os.sep):
            return True
    return False


def _format_traceback(exc):
    """The traceback of exc, starting at the first frame that belongs to user code."""
    try:
        import traceback
        tb = exc.__traceback__
        while tb is not None and _is_internal(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        return ""
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "[traceback truncated]\n" + text[-MAX_TRACEBACK_CHARS:]
    return text


def _display_path(filename):
    if _code_dir and filename.startswith(_code_dir.rstrip("/") + "/"):
        return filename[len(_code_dir.rstrip("/")) + 1:]
    return filename


def _message(exc, during):
    try:
        if isinstance(exc, SystemExit):
            text = "%s called exit(%r)" % (during, exc.code)
        elif isinstance(exc, SyntaxError) and exc.filename:
            text = "%s (%s, line %s)" % (exc.msg, _display_path(exc.filename), exc.lineno)
        else:
            text = str(exc)
    except BaseException:
        text = "<%s: str() failed>" % type(exc).__name__
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + " [message truncated]"
    return text


def _error(exc, during):
    return {"type": type(exc).__name__, "message": _message(exc, during),
            "traceback": _format_traceback(exc)}


def _simple_error(etype, message):
    return {"type": etype, "message": message, "traceback": ""}


# ---------------------------------------------------------------- load

class _LoadError(Exception):
    def __init__(self, etype, message):
        Exception.__init__(self, message)
        self.payload = _simple_error(etype, message)


def _code_of(fn):
    code = getattr(fn, "__code__", None)
    if isinstance(code, _CodeType):
        return code
    call = getattr(type(fn), "__call__", None)
    code = getattr(call, "__code__", None)
    if isinstance(code, _CodeType):
        return code
    return None


def _max_positional(fn, depth=0):
    """How many positional arguments fn accepts (_MANY for *args), or None if unknown."""
    if depth > 16:
        return None
    # Bound method (checked first: bound methods proxy __code__ to their function).
    func = getattr(fn, "__func__", None)
    if func is not None and getattr(fn, "__self__", None) is not None:
        n = _max_positional(func, depth + 1)
        return None if n is None else max(n - 1, 0)
    code = getattr(fn, "__code__", None)
    if isinstance(code, _CodeType):
        if code.co_flags & _CO_VARARGS:
            # functools.wraps-style decorators take (*args, **kwargs): look through them.
            wrapped = getattr(fn, "__wrapped__", None)
            if wrapped is not None:
                n = _max_positional(wrapped, depth + 1)
                if n is not None:
                    return n
            return _MANY
        return code.co_argcount
    # functools.partial
    if type(fn).__name__ == "partial":
        inner, args = getattr(fn, "func", None), getattr(fn, "args", None)
        if inner is not None and type(args) is tuple:
            n = _max_positional(inner, depth + 1)
            return None if n is None else max(n - len(args), 0)
        return None
    # An instance with __call__ (classes themselves are left to the fallback).
    if not isinstance(fn, type):
        call = getattr(type(fn), "__call__", None)
        if isinstance(getattr(call, "__code__", None), _CodeType):
            n = _max_positional(call, depth + 1)
            return None if n is None else max(n - 1, 0)
    return None


def _detect_call_style(fn):
    try:
        n = _max_positional(fn)
    except Exception:
        n = None
    if n is None:
        return 2
    return 2 if n >= 2 else n


def _maybe_app(obj):
    """Cheap test before importing kumo_apps: could obj be an ASGI or WSGI app?"""
    if hasattr(obj, "wsgi_app"):
        return True
    code = _code_of(obj)
    if code is None:
        return False
    return bool(code.co_flags & _CO_COROUTINE and code.co_argcount >= 3) or \
        "start_response" in code.co_varnames[:code.co_argcount]


def _load_apps_module():
    from _frozen_importlib_external import SourceFileLoader, SourcelessFileLoader
    pyc = os.path.join(_APPS_DIR, "kumo_apps.pyc")
    if os.path.isfile(pyc):
        loader = SourcelessFileLoader("kumo_apps", pyc)
    else:
        loader = SourceFileLoader("kumo_apps", os.path.join(_APPS_DIR, "kumo_apps.py"))
    module = module_from_spec(spec_from_file_location("kumo_apps", loader.path, loader=loader))
    loader.exec_module(module)
    return module


def _serve_app(obj):
    """A handler serving obj when it is an ASGI or WSGI app, else None."""
    global _app
    if not _maybe_app(obj):
        return None
    apps = _load_apps_module()
    kind = apps.kind(obj)
    if kind == "asgi":
        app = apps.AsgiApp(obj, _event_loop(), _asyncio)
        app.startup(60)
    elif kind == "wsgi":
        app = apps.WsgiApp(obj)
    else:
        return None
    _app = app
    return app


def _shutdown_app():
    app = _app
    if app is not None and hasattr(app, "shutdown"):
        try:
            app.shutdown(2)
        except BaseException:
            pass
        _flush_std()


def _import_handler(code_dir, entrypoint, handler_name, paths=()):
    global _code_dir
    rel = os.path.normpath(entrypoint)
    if (not rel.endswith(".py") or os.path.isabs(rel) or rel == ".." or rel.startswith("../")):
        raise _LoadError("InvalidEntrypoint",
                         "entrypoint must be a .py file inside the deployment, got %r" % (entrypoint,))
    code_dir = os.path.abspath(code_dir)
    _code_dir = code_dir
    path = os.path.join(code_dir, rel)
    if not os.path.isfile(path):
        raise _LoadError("EntrypointNotFound", "entrypoint %s not found in the deployment" % (entrypoint,))
    name = rel[:-3].replace("/", ".")
    if name.endswith(".__init__"):
        name = name[:-9]

    sys.path.insert(0, code_dir)
    # Dependency layers come after the deployment's own files.
    sys.path[1:1] = [p for p in paths if p not in sys.path]
    os.chdir(code_dir)
    spec = spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _LoadError("ImportError", "cannot load %s as a Python module" % (entrypoint,))
    module = module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if sys.modules.get(name) is module:
            del sys.modules[name]
        raise
    module = sys.modules.get(name, module)  # a module may replace itself in sys.modules

    obj = module
    if handler_name == "handler" and not hasattr(module, "handler") and hasattr(module, "app"):
        handler_name = "app"  # a web app (FastAPI, Flask…) under its usual name
    for part in handler_name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _LoadError("HandlerNotFound",
                             "%s has no attribute %r (define handler(event, context), or an "
                             "ASGI/WSGI app)" % (entrypoint, handler_name)) from None
    if not callable(obj):
        raise _LoadError("HandlerNotCallable", "%r in %s is not callable (it is a %s)"
                         % (handler_name, entrypoint, type(obj).__name__))
    code = _code_of(obj)
    flags = code.co_flags if code is not None else 0
    if flags & (_CO_ASYNC_GENERATOR | _CO_GENERATOR):
        kind = "an async generator" if flags & _CO_ASYNC_GENERATOR else "a generator"
        raise _LoadError("HandlerNotSupported",
                         "%r in %s is %s function; a handler must return its result, not yield it"
                         % (handler_name, entrypoint, kind))
    app = _serve_app(obj)
    if app is not None:
        return app
    if flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE):
        _event_loop()  # pay for importing asyncio during load, not on the first request
    return obj


def _on_load(msg):
    global _loaded, _handler, _call_style
    if _loaded:
        _fatal("second load message")
    _loaded = True
    code_dir, entrypoint, handler_name = msg.get("code_dir"), msg.get("entrypoint"), msg.get("handler")
    if not (type(code_dir) is str and type(entrypoint) is str and type(handler_name) is str):
        _fatal("load needs string fields code_dir, entrypoint and handler")
    env = msg.get("env")
    if env is not None:
        if type(env) is not dict or not all(type(v) is str for v in env.values()):
            _fatal("load field env must be an object of strings")
        for key, value in env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                _fatal("load field env holds an invalid variable")
            os.environ[key] = value
    paths = msg.get("paths")
    if paths is None:
        paths = []
    if type(paths) is not list or not all(type(p) is str for p in paths):
        _fatal("load field paths must be a list of strings")
    error = None
    try:
        fn = _import_handler(code_dir, entrypoint, handler_name, paths)
    except _LoadError as e:
        error = e.payload
    except BaseException as e:
        error = _error(e, "module")
    _flush_std()
    if error is not None:
        _send_obj({"type": "load_error", "error": error})
        return
    _handler = fn
    _call_style = _detect_call_style(fn)
    _send([b'{"type":"loaded"}'])


# ---------------------------------------------------------------- invoke

class Context(object):
    """What a handler receives as its second argument."""

    __slots__ = ("request_id", "function_name", "version", "memory_limit_mb", "env", "_deadline_ms")

    def __init__(self, request_id, function_name, version, memory_limit_mb, deadline_ms):
        self.request_id = request_id
        self.function_name = function_name
        self.version = version
        self.memory_limit_mb = memory_limit_mb
        self.env = os.environ
        self._deadline_ms = deadline_ms

    def remaining_time_ms(self):
        """Milliseconds left before the invocation's deadline (never negative)."""
        d = self._deadline_ms
        if d is None:
            return NO_DEADLINE_MS
        left = int(d - _time_ns() // 1000000)
        return left if left > 0 else 0

    def __repr__(self):
        return ("Context(request_id=%r, function_name=%r, version=%r, memory_limit_mb=%r, "
                "remaining_time_ms=%r)" % (self.request_id, self.function_name, self.version,
                                           self.memory_limit_mb, self.remaining_time_ms()))


def _event_loop():
    global _loop, _asyncio
    if _asyncio is None:
        import asyncio
        _asyncio = asyncio
    if _loop is None or _loop.is_closed():
        _loop = _asyncio.new_event_loop()
    _asyncio.set_event_loop(_loop)
    return _loop


def _is_awaitable(value):
    t = type(value)
    if hasattr(t, "__await__"):
        return True
    # generator-based coroutines (@types.coroutine)
    code = getattr(value, "gi_code", None)
    return t.__name__ == "generator" and code is not None and bool(code.co_flags & _CO_ITERABLE_COROUTINE)


def _b64(data):
    import binascii
    return binascii.b2a_base64(bytes(data), newline=False).decode("ascii")


def _normalize(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": _b64(value), "isBase64Encoded": True}
    if isinstance(value, dict) and "statusCode" in value:
        body = value.get("body")
        if isinstance(body, (bytes, bytearray, memoryview)):
            value = dict(value)
            value["body"] = _b64(body)
            value["isBase64Encoded"] = True
    return value


def _send_error_result(rid_json, error):
    _flush_std()
    _send([('{"type":"result","id":' + rid_json + ',"ok":false,"error":').encode("utf-8"),
           _encode(error).encode("utf-8", "replace"), b"}"])


def _on_invoke(msg):
    rid = msg.get("id")
    if type(rid) is not str:
        _fatal("invoke needs a string id")
    if _handler is None:
        _fatal("invoke before a successful load")
    rid_json = _encode(rid)
    ctx = msg.get("context")
    if type(ctx) is not dict:
        ctx = {}
    context = Context(rid, ctx.get("function_name"), ctx.get("version"),
                      ctx.get("memory_limit_mb"), ctx.get("deadline_ms"))
    event = msg.get("event")
    handler = _handler

    try:
        if _call_style == 2:
            value = handler(event, context)
        elif _call_style == 1:
            value = handler(event)
        else:
            value = handler()
        if _is_awaitable(value):
            value = _event_loop().run_until_complete(value)
    except BaseException as e:
        if _getpid() != _PID:
            _os_exit(0)
        _send_error_result(rid_json, _error(e, "handler"))
        return
    if _getpid() != _PID:
        _os_exit(0)

    try:
        out = _encode(_normalize(value)).encode("utf-8")
    except Exception as e:
        _send_error_result(rid_json, _simple_error(
            "SerializationError",
            "handler returned a value that cannot be serialized as JSON: " + _message(e, "handler")))
        return
    head = ('{"type":"result","id":' + rid_json + ',"ok":true,"output":').encode("utf-8")
    if len(head) + len(out) + 1 > MAX_FRAME:
        _send_error_result(rid_json, _simple_error(
            "OutputTooLarge", "handler output is %d bytes once encoded as JSON; the limit is %d bytes"
            % (len(out), MAX_FRAME - len(head) - 1)))
        return
    _flush_std()
    _send([head, out, b"}"])


# ---------------------------------------------------------------- main

def main():
    # -S skips site, which is what normally defines exit() and quit(); user
    # code that calls them should get SystemExit, not NameError.
    import builtins
    for name in ("exit", "quit"):
        if not hasattr(builtins, name):
            setattr(builtins, name, sys.exit)
    # Programs that user code executes must not inherit the channel.
    try:
        os.set_inheritable(CHANNEL_FD, False)
    except OSError as e:
        _fatal("the channel (fd %d) is not open: %s" % (CHANNEL_FD, e))
    v = sys.version_info
    _send_obj({"type": "hello", "protocol": PROTOCOL_VERSION, "runtime": "python",
               "runtime_version": "%d.%d.%d" % (v[0], v[1], v[2])})
    # The interpreter's first compile() sets up its parser and compiler and
    # takes a couple of milliseconds; pay for it while the host prepares
    # `load` (or, in a pre-started sandbox, while nothing happens at all),
    # not while it waits for the user's module.
    compile("def _f(a, *b, **c):\n    return {'k': [a, b, c]}\n", "<kumo-warm-up>", "exec")
    while True:
        msg = _read_message()
        kind = msg.get("type")
        if kind == "invoke":
            _on_invoke(msg)
        elif kind == "load":
            _on_load(msg)
        else:
            _fatal("unknown message type %r" % (kind,))


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # a bug in the runner itself (or a signal while idle)
        try:
            import traceback
            _stderr("kumo-runner: internal error\n" + traceback.format_exc())
        finally:
            _exit(1)
