#!/usr/bin/env python3
"""Kumo benchmarks: one command, side-by-side figures, BENCHMARKS.md updated.

    bench/run            (builds the release binary, installs wrk if needed)

Measures, in one run on this machine:
  warm      wrk against /fn/... for a hello function (req/s, p50, p99),
            beside a bare call of the runner (the same handler driven over
            the runner protocol with no server, no HTTP) for the overhead;
  cold      first-call latency of freshly deployed functions (fully
            sandboxed: spawn -> namespaces -> runner -> import -> answer),
            as measured by the server (duration_ms of cold runs) and by
            the client;
  deploy    deploy request -> first 200 from /fn.

Only loopback addresses are used; every loop is bounded.
"""

import json
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUMO = os.path.join(ROOT, "target", "release", "kumo")
PYTHON = "/usr/bin/python3.11"
TOKEN = "bench-token-0123456789"
HELLO = 'def handler(event):\n    return {"hello": "world"}\n'


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def request(base, method, path, body=None, token=TOKEN, content_type="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("content-type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="kumo-bench-")
        env = dict(os.environ, KUMO_BOOTSTRAP_TOKEN=TOKEN, KUMO_LOG="warn")
        self.proc = subprocess.Popen(
            [KUMO, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.dir, *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        deadline = time.time() + 60
        self.base = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.base = m.group(1)
                break
        if not self.base:
            raise SystemExit("kumo serve did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["rm", "-rf", self.dir])


def deploy(server, project, function, source=HELLO, **settings):
    body = {"files": {"main.py": source}, **settings}
    status, out = request(server.base, "POST", f"/api/v1/projects/{project}/functions/{function}/deployments", body)
    if status not in (200, 201):
        raise SystemExit(f"deploy failed: {status} {out[:300]}")


def wrk(url, seconds=10, connections=16, threads=2):
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout

    def ms(text):
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
        p99 = ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    except (AttributeError, ValueError):
        raise SystemExit("could not read wrk's output:\n" + out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(errors.group(1)) if errors else 0}


def bare_runner(calls=20000):
    """The same handler driven over the runner protocol, no server: the
    floor that Kumo's per-call overhead is measured against."""
    code = tempfile.mkdtemp(prefix="kumo-bench-code-")
    with open(os.path.join(code, "main.py"), "w") as f:
        f.write(HELLO)
    host, child = socket.socketpair()
    runner = os.path.join(ROOT, "runners", "python", "kumo_runner.py")

    def setup():
        os.dup2(child.fileno(), 3)

    proc = subprocess.Popen([PYTHON, "-I", "-S", "-B", "-u", runner], preexec_fn=setup, close_fds=False,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child.close()

    def send(obj):
        data = json.dumps(obj).encode()
        host.sendall(struct.pack(">I", len(data)) + data)

    def recv():
        head = b""
        while len(head) < 4:
            head += host.recv(4 - len(head))
        n = struct.unpack(">I", head)[0]
        data = b""
        while len(data) < n:
            data += host.recv(n - len(data))
        return json.loads(data)

    recv()
    send({"type": "load", "code_dir": code, "entrypoint": "main.py", "handler": "handler"})
    recv()
    event = {"method": "GET", "path": "/", "params": {}, "query": {}, "headers": {"host": "x"}, "body": "",
             "isBase64Encoded": False}
    times = []
    for i in range(calls):
        t = time.perf_counter()
        send({"type": "invoke", "id": str(i), "event": event,
              "context": {"function_name": "h", "version": 1, "memory_limit_mb": 128, "deadline_ms": 0}})
        recv()
        times.append((time.perf_counter() - t) * 1000)
    host.close()
    proc.wait(timeout=10)
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "rps": calls / (sum(times) / 1000)}


def cold_starts(server, n=40):
    server_ms, client_ms = [], []
    for i in range(n):
        name = f"cold{i}"
        deploy(server, "cold", name)
        t = time.perf_counter()
        status, out = request(server.base, "POST", f"/api/v1/projects/cold/functions/{name}/invoke", {})
        client_ms.append((time.perf_counter() - t) * 1000)
        run = json.loads(out)
        if status != 200 or not run.get("cold_start") or run.get("status") != "succeeded":
            raise SystemExit(f"cold call failed: {status} {out[:300]}")
        server_ms.append(run["duration_ms"])
    return {"server_p50": pct(server_ms, 50), "server_p99": pct(server_ms, 99),
            "client_p50": pct(client_ms, 50), "client_p99": pct(client_ms, 99), "n": n}


def deploy_to_200(server, n=15):
    times = []
    for i in range(n):
        name = f"d{i}"
        t = time.perf_counter()
        deploy(server, "deploys", name)
        status, _ = request(server.base, "GET", f"/fn/deploys/{name}", token=None)
        times.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise SystemExit(f"first call after deploy answered {status}")
    return {"p50": pct(times, 50), "p99": pct(times, 99), "n": n}


def main():
    if not os.path.exists("/usr/bin/wrk"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "-p", "kumo"], cwd=ROOT, check=True)
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    server = Server("--keep-alive-ms", "600000")
    try:
        deploy(server, "bench", "hello", concurrency=16)
        url = server.base + "/fn/bench/hello"
        # Warm every instance the load will use (16 connections), so the
        # measured phase has no cold starts in it.
        wrk(url, seconds=3)
        warm = wrk(url, seconds=seconds)
        single = wrk(url, seconds=max(3, seconds // 2), connections=1, threads=1)
        bare = bare_runner()
        cold = cold_starts(server)
        d200 = deploy_to_200(server)
    finally:
        server.stop()

    rows = [
        ("warm hello via /fn (wrk -t2 -c16)", f"{warm['rps']:.0f} req/s, p50 {warm['p50_ms']:.2f} ms, p99 {warm['p99_ms']:.2f} ms",
         f"bare runner, no server: p50 {bare['p50_ms']:.3f} ms, p99 {bare['p99_ms']:.3f} ms"),
        ("warm hello via /fn, one connection (wrk -t1 -c1)", f"{single['rps']:.0f} req/s, p50 {single['p50_ms']:.3f} ms, p99 {single['p99_ms']:.3f} ms",
         f"bare runner p50 {bare['p50_ms']:.3f} ms"),
        ("platform overhead per warm call (c=1 p50 − bare p50)", f"{(single['p50_ms'] - bare['p50_ms']) * 1000:.0f} µs", "—"),
        (f"cold start, sandboxed, server-measured (n={cold['n']})", f"p50 {cold['server_p50']:.1f} ms, p99 {cold['server_p99']:.1f} ms",
         f"client-measured p50 {cold['client_p50']:.1f} ms, p99 {cold['client_p99']:.1f} ms"),
        (f"deploy → first 200 (n={d200['n']})", f"p50 {d200['p50']:.1f} ms, p99 {d200['p99']:.1f} ms", "—"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value, baseline in rows:
        print(f"{name:<{width}}  {value:<45}  {baseline}")
    if warm["non2xx"]:
        print(f"warning: {warm['non2xx']} non-2xx responses under load")
    table = "\n".join(f"| {n} | {v} | {b} |" for n, v, b in rows)
    stamp = time.strftime("%Y-%m-%d")
    section = (f"<!-- bench:start -->\nLast run: {stamp}, `bench/run`, release build, {os.cpu_count()} cores.\n\n"
               f"| measure | Kumo | baseline (same run) |\n|---|---|---|\n{table}\n<!-- bench:end -->")
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else ""
    if "<!-- bench:start -->" in text:
        text = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _: section, text, flags=re.S)
        open(path, "w").write(text)
        print("\nBENCHMARKS.md updated")
    else:
        print("\n(no bench markers in BENCHMARKS.md; table not written)")


if __name__ == "__main__":
    sys.exit(main())
