"""Baseline (c): the process-per-call model (CGI style).

A small threaded HTTP server (standard library only, loopback only). For
every request it builds the same event Kumo's gateway builds, starts a fresh

    /usr/bin/python3.11 -I -S -c CHILD CODE_DIR

that imports the handler module (`main.py` in CODE_DIR), reads the event as
JSON on stdin, calls `handler(event)`, prints the JSON result and exits; the
server answers with that output. No sandbox, no pooling, no reuse.

    python3.11 bench/baselines/process_per_call.py --code-dir DIR [--port 0]

prints `listening on http://127.0.0.1:PORT` once it accepts connections, and
exits by itself after --max-seconds (default 600) if nobody stops it first.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

PYTHON = "/usr/bin/python3.11"

# The child: import the handler, call it with the event from stdin, print the result.
CHILD = (
    "import sys, json\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from main import handler\n"
    "sys.stdout.write(json.dumps(handler(json.loads(sys.stdin.read())), separators=(',', ':')))\n"
)


def child_command(code_dir):
    return [PYTHON, "-I", "-S", "-c", CHILD, code_dir]


def event_for(method, target, header_items, body):
    """The event of Kumo's handler contract, for one HTTP request."""
    url = urlsplit(target)
    query = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    headers = {}
    for name, value in header_items:
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        import base64
        text, b64 = base64.b64encode(body).decode("ascii"), True
    return {"method": method, "path": url.path, "params": {}, "query": query, "headers": headers,
            "body": text, "isBase64Encoded": b64}


def make_handler(code_dir):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as with the other servers under wrk

        def log_message(self, *args):
            pass

        def _serve(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            event = event_for(self.command, self.path, self.headers.items(), body)
            try:
                proc = subprocess.run(child_command(code_dir), input=json.dumps(event).encode(),
                                      capture_output=True, timeout=30)
                ok = proc.returncode == 0
                payload = proc.stdout if ok else b'{"error":"handler process failed"}'
            except subprocess.TimeoutExpired:
                ok, payload = False, b'{"error":"handler process timed out"}'
            self.send_response(200 if ok else 502)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # wrk closes its connections mid-request when its time is up.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), make_handler(os.path.abspath(args.code_dir)))
    timer = threading.Timer(args.max_seconds, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
