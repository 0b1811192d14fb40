#!/usr/bin/env python3
"""Kumo benchmarks: one command, side-by-side figures, BENCHMARKS.md updated.

    bench/run            (builds the release binary, installs wrk and the
                          uvicorn baseline's virtualenv if needed)

Measures, in one run on this machine, with every baseline in the same run:
  (a) warm      wrk -t2 -c16 and wrk -t1 -c1 against /fn/... for a hello
                function (req/s, p50, p99);
      bare      the same handler driven over the runner protocol with no
                server, no HTTP, no sandbox: the floor for the per-call
                platform overhead;
  (b) uvicorn   the same handler as a raw ASGI app (bench/baselines/
                asgi_hello.py) under uvicorn + uvloop + httptools, 1 worker
                and 2 workers, same wrk load;
  (c) process   the process-per-call model (bench/baselines/
                process_per_call.py): a fresh interpreter per request;
  cold          first-call latency (server-measured duration_ms) of
                freshly deployed functions with pre-warming on, of functions
                woken from zero, and with pre-warming off (--prewarm 0),
                beside the same runner started with no sandbox;
  deploy        deploy request -> first 200 from /fn;
  memory        an idle warm instance (runner and whole instance: USS, PSS,
                RSS from /proc/PID/smaps_rollup), and the server process
                with 1,000 deployed idle functions against itself at start;
  tenant        SECURITY.md item 22: a bystander function's latency (p50,
                p99) while another project's function is flooded, against
                the same bystander alone just before, on one default server.

    bench/run tenant     runs only the tenant row and updates that row of
                         the table in BENCHMARKS.md

Only loopback addresses are used; every loop is bounded in count and time;
every server started here is stopped in a finally block.
"""

import concurrent.futures
import http.client
import json
import multiprocessing
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
# KUMO_BIN: use this binary instead of building the release one (for
# trying the script itself; published figures come from the release build).
KUMO = os.environ.get("KUMO_BIN") or os.path.join(ROOT, "target", "release", "kumo")
PYTHON = "/usr/bin/python3.11"
VENV = os.path.join(BENCH, ".venv")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
RUNNER = os.path.join(ROOT, "runners", "python", "kumo_runner.py")
TOKEN = "bench-token-0123456789"
HELLO = 'def handler(event):\n    return {"hello": "world"}\n'
TINY = 'def handler(event):\n    return {"n": %d}\n'
COLD_N = 40
MANY_N = 1000
WAKE_KEEP_ALIVE_MS = 300
# The tenant row (SECURITY.md item 22): sequential bystander calls, each
# phase; concurrent flooding clients. All projects belong to the one admin
# account, whose calls share one per-user budget of 100 concurrent calls
# (held while a call waits in its function's queue), so the flood stays
# under it and is refused by the flooded function's own limit (concurrency
# 10, then its queue, 1 s): the per-function limit is what is exercised.
TENANT_N = 300
FLOOD_CLIENTS = 80
FLOOD_MAX_S = 60
# The flooded handler burns 100 ms of CPU time per call (not wall time: on
# 2 cores its 10 instances cannot all run, and each still burns its share).
SPIN = ('import time\n\ndef handler(event):\n    end = time.process_time() + 0.1\n'
        '    while time.process_time() < end:\n        pass\n    return "spun"\n')
# Between wake-up calls (cold start variant 2): about one deploy's time, as
# in variant 1, so the pre-warmed pool has refilled as it has there.
WAKE_PACE_S = 0.05


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {seconds} s")


def stop_group(proc, timeout=15):
    """Stops a process started with start_new_session=True, and its children."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


class Server:
    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="kumo-bench-")
        env = dict(os.environ, KUMO_BOOTSTRAP_TOKEN=TOKEN, KUMO_LOG="warn")
        self.proc = subprocess.Popen(
            [KUMO, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.dir, "--python", PYTHON, *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        deadline = time.time() + 60
        self.base = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.base = m.group(1)
                break
            if not line and self.proc.poll() is not None:
                break
        if not self.base:
            self.stop()
            raise SystemExit("kumo serve did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        subprocess.run(["rm", "-rf", self.dir])

    def instances(self):
        status, out = request(self.base, "GET", "/metrics")
        m = re.search(r"^kumo_instances (\d+)", out.decode(), re.M) if status == 200 else None
        if not m:
            raise SystemExit(f"/metrics has no kumo_instances: {status} {out[:200]}")
        return int(m.group(1))


NODE_HELLO = 'exports.handler = async (event) => ({ hello: "world" });\n'


def deploy(server, project, function, source=HELLO, **settings):
    if settings.get("runtime") == "node":
        body = {"files": {"index.js": source}, **settings}
    else:
        body = {"files": {"main.py": source}, **settings}
    status, out = request(server.base, "POST", f"/api/v1/projects/{project}/functions/{function}/deployments", body)
    if status not in (200, 201):
        raise SystemExit(f"deploy failed: {status} {out[:300]}")


def invoke(server, project, function):
    t = time.perf_counter()
    status, out = request(server.base, "POST", f"/api/v1/projects/{project}/functions/{function}/invoke", {})
    client_ms = (time.perf_counter() - t) * 1000
    run = json.loads(out)
    if status != 200 or run.get("status") != "succeeded":
        raise SystemExit(f"call of {project}/{function} failed: {status} {out[:300]}")
    return run, client_ms


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
    sock_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_errors.group(1) if sock_errors else "", "seconds": seconds}


# ---------------------------------------------------------------- memory

def smaps(pid):
    """Rss, Pss and USS (Private_Clean + Private_Dirty) of one process, in kB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def add_mem(*ms):
    return {k: sum(m[k] for m in ms) for k in ("rss", "pss", "uss")}


def process_tree():
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def subtree(children, pid):
    out, todo = [], [pid]
    while todo and len(out) < 100000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def has_code_mount(pid):
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return any(len(line.split()) > 4 and line.split()[4] == "/code" for line in f)
    except OSError:
        return False


def instance_memory(server_pid):
    """Memory of the function instances under the server: each is a
    `kumo __sandbox` helper, its child init, and the runner under it; the
    function's (not the pre-warmed generic sandboxes') are those with a
    mount at /code. Returns the median instance by total USS."""
    children = process_tree()
    found = []
    for pid in children.get(server_pid, []):  # the helpers; init is a `__sandbox` too
        if cmdline(pid)[1:2] != ["__sandbox"]:
            continue
        procs = subtree(children, pid)  # helper, init, runner
        runners = [p for p in procs if any("kumo_runner" in a for a in cmdline(p))]
        if len(runners) != 1 or not any(has_code_mount(p) for p in procs if p != pid):
            continue
        try:
            runner = smaps(runners[0])
            total = add_mem(*(smaps(p) for p in procs))
        except OSError:
            continue
        found.append({"runner": runner, "total": total, "processes": len(procs)})
    if not found:
        raise SystemExit("no idle function instance found under the server")
    found.sort(key=lambda i: i["total"]["uss"])
    return dict(found[len(found) // 2], n=len(found))


def mb(kb):
    """kB as /proc reports them (1024 bytes) to MB (10^6 bytes)."""
    return kb * 1024 / 1e6


def mem_text(m, keys=("uss", "pss", "rss")):
    return ", ".join(f"{k.upper()} {mb(m[k]):.1f} MB" for k in keys)


# ---------------------------------------------------------------- the runner, no server

class BareRunner:
    """The runner started directly (no sandbox, no server), driven over
    the runner protocol on a socketpair, as Kumo drives it."""

    def __init__(self, code):
        self.host, child = socket.socketpair()

        def setup():
            os.dup2(child.fileno(), 3)

        self.proc = subprocess.Popen([PYTHON, "-I", "-S", "-B", "-u", RUNNER], preexec_fn=setup, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        child.close()
        self.host.settimeout(30)
        self.code = code

    def send(self, obj):
        data = json.dumps(obj).encode()
        self.host.sendall(struct.pack(">I", len(data)) + data)

    def recv(self):
        head = b""
        while len(head) < 4:
            chunk = self.host.recv(4 - len(head))
            if not chunk:
                raise SystemExit("the runner closed its channel")
            head += chunk
        n = struct.unpack(">I", head)[0]
        data = b""
        while len(data) < n:
            chunk = self.host.recv(n - len(data))
            if not chunk:
                raise SystemExit("the runner closed its channel")
            data += chunk
        return json.loads(data)

    def load(self):
        self.recv()  # hello
        self.send({"type": "load", "code_dir": self.code, "entrypoint": "main.py", "handler": "handler"})
        self.recv()

    EVENT = {"method": "GET", "path": "/", "params": {}, "query": {}, "headers": {"host": "x"}, "body": "",
             "isBase64Encoded": False}

    def call(self, i):
        self.send({"type": "invoke", "id": str(i), "event": self.EVENT,
                   "context": {"function_name": "h", "version": 1, "memory_limit_mb": 128, "deadline_ms": 0}})
        return self.recv()

    def close(self):
        self.host.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def bare_runner(code, calls=20000):
    """Warm calls of the bare runner, one at a time: the floor that Kumo's
    per-call overhead is measured against; and its memory when idle."""
    runner = BareRunner(code)
    try:
        runner.load()
        times = []
        for i in range(calls):
            t = time.perf_counter()
            runner.call(i)
            times.append((time.perf_counter() - t) * 1000)
        time.sleep(0.5)
        memory = smaps(runner.proc.pid)
    finally:
        runner.close()
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "rps": calls / (sum(times) / 1000),
            "memory": memory}


def bare_runner_start(code, n=COLD_N):
    """The cold path without the sandbox: spawn the runner, its hello, load
    the handler, first answer."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        runner = BareRunner(code)
        try:
            runner.load()
            runner.call(0)
            times.append((time.perf_counter() - t) * 1000)
        finally:
            runner.close()
    return {"p50": pct(times, 50), "p99": pct(times, 99), "n": n}


# ---------------------------------------------------------------- Kumo measures

def cold_starts(server, project, n=COLD_N, runtime="python"):
    """Deploy, then call once, one function after the other."""
    server_ms, client_ms = [], []
    for i in range(n):
        name = f"cold{i}"
        if runtime == "node":
            deploy(server, project, name, NODE_HELLO, runtime="node")
        else:
            deploy(server, project, name)
        run, client = invoke(server, project, name)
        if not run.get("cold_start"):
            raise SystemExit(f"the first call of {project}/{name} was not a cold start")
        server_ms.append(run["duration_ms"])
        client_ms.append(client)
    return {"server_p50": pct(server_ms, 50), "server_p99": pct(server_ms, 99),
            "client_p50": pct(client_ms, 50), "client_p99": pct(client_ms, 99), "n": n}


def cold_starts_paced(server, project, runtime, n=20, pause=0.3):
    """Like cold_starts, with a pause between functions (bounded)."""
    server_ms, client_ms = [], []
    for i in range(n):
        part = cold_starts(server, f"{project}{i}", n=1, runtime=runtime)
        server_ms.append(part["server_p50"])
        client_ms.append(part["client_p50"])
        time.sleep(pause)
    return {"server_p50": pct(server_ms, 50), "server_p99": pct(server_ms, 99),
            "client_p50": pct(client_ms, 50), "client_p99": pct(client_ms, 99), "n": n}


def wait_scaled_to_zero(server, keep_alive_ms, since):
    """Until the server runs no function instance and keep-alive + 1 s has
    passed since `since` (bounded)."""
    deadline = time.time() + keep_alive_ms / 1000 + 60
    while time.time() < deadline:
        if server.instances() == 0 and time.time() - since > keep_alive_ms / 1000 + 1:
            return
        time.sleep(0.2)
    raise SystemExit("instances were not scaled to zero in time")


def woken_from_zero(server, n=COLD_N, keep_alive_ms=WAKE_KEEP_ALIVE_MS):
    for i in range(n):
        deploy(server, "wake", f"w{i}")
    for i in range(n):
        invoke(server, "wake", f"w{i}")
    wait_scaled_to_zero(server, keep_alive_ms, time.time())
    server_ms, client_ms = [], []
    for i in range(n):
        time.sleep(WAKE_PACE_S)
        run, client = invoke(server, "wake", f"w{i}")
        if not run.get("cold_start"):
            raise SystemExit(f"wake/w{i} was still warm after scale to zero")
        server_ms.append(run["duration_ms"])
        client_ms.append(client)
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


def many_functions(server, n=MANY_N, keep_alive_ms=WAKE_KEEP_ALIVE_MS):
    """The server process's memory at start, with n deployed functions never
    called, and after each has been called once and scaled back to zero."""
    time.sleep(1)
    at_start = smaps(server.proc.pid)
    started = time.time()

    def one(i):
        deploy(server, "many", f"f{i}", source=TINY % i)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(one, i) for i in range(n)]:
            future.result(timeout=max(1, 300 - (time.time() - started)))
    deploy_s = time.time() - started
    time.sleep(1)
    deployed = smaps(server.proc.pid)

    def call(i):
        invoke(server, "many", f"f{i}")

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(call, i) for i in range(n)]:
            future.result(timeout=max(1, 300 - (time.time() - started)))
    wait_scaled_to_zero(server, keep_alive_ms, time.time())
    time.sleep(1)
    called = smaps(server.proc.pid)
    return {"start": at_start, "deployed": deployed, "called": called, "n": n, "deploy_s": deploy_s}


# ---------------------------------------------------------------- tenants

def timed_gets(base, path, n):
    """n sequential GETs on one keep-alive connection: latencies in ms,
    statuses, and when the first began and the last ended (monotonic)."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    times, statuses = [], []
    began = time.monotonic()
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            times.append((time.perf_counter() - t) * 1000)
            statuses.append(resp.status)
    finally:
        conn.close()
    return {"times": times, "statuses": statuses, "began": began, "ended": time.monotonic()}


def flood(base, path, clients, stop, results):
    """Runs in its own process (so that its threads do not hold the
    measuring process's interpreter lock): `clients` threads, each calling
    `path` back to back on its own keep-alive connection, ignoring
    Retry-After, until `stop` is set or FLOOD_MAX_S has passed."""
    import threading
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    deadline = time.monotonic() + FLOOD_MAX_S
    lock = threading.Lock()
    counts = {"statuses": {}, "retry_after": 0, "first": None, "last": None, "errors": 0}

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                with lock:
                    counts["errors"] += 1
                continue
            now = time.monotonic()
            with lock:
                counts["statuses"][resp.status] = counts["statuses"].get(resp.status, 0) + 1
                if resp.status == 429 and resp.getheader("retry-after"):
                    counts["retry_after"] += 1
                counts["first"] = now if counts["first"] is None else counts["first"]
                counts["last"] = now
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1, deadline - time.monotonic() + 35))
    results.put(counts)


def tenant_isolation(n=TENANT_N, clients=FLOOD_CLIENTS):
    """SECURITY.md item 22, on a server with the default settings: project
    B's hello called n times one after the other, alone (the baseline),
    then again while `clients` concurrent clients flood project A's
    CPU-bound function (default concurrency)."""
    server = Server()
    try:
        deploy(server, "tenanta", "spin", source=SPIN)
        deploy(server, "tenantb", "hello")
        warm = timed_gets(server.base, "/fn/tenantb/hello", 50)
        status, _ = request(server.base, "GET", "/fn/tenanta/spin", token=None)
        if status != 200 or set(warm["statuses"]) != {200}:
            raise SystemExit(f"tenant row: warm-up calls failed: {status} {set(warm['statuses'])}")
        alone = timed_gets(server.base, "/fn/tenantb/hello", n)
        ctx = multiprocessing.get_context("fork")
        stop, results = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=flood, args=(server.base, "/fn/tenanta/spin", clients, stop, results))
        proc.start()
        try:
            time.sleep(2)  # the flood fills A's slots and queue
            flooded = timed_gets(server.base, "/fn/tenantb/hello", n)
        finally:
            stop.set()
            try:
                counts = results.get(timeout=FLOOD_MAX_S + 60)
            finally:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=10)
    finally:
        server.stop()
    return {"alone": alone, "flooded": flooded, "flood": counts, "n": n, "clients": clients}


def tenant_row(t):
    a, f, c = t["alone"], t["flooded"], t["flood"]
    a50, a99 = pct(a["times"], 50), pct(a["times"], 99)
    f50, f99 = pct(f["times"], 50), pct(f["times"], 99)
    r50, r99 = f50 / a50, f99 / a99
    ok_b = sum(1 for s in f["statuses"] if s == 200)
    statuses = ", ".join(f"{c['statuses'][s]} × {s}" for s in sorted(c["statuses"]))
    overlap = c["first"] is not None and c["first"] < f["began"] and c["last"] > f["ended"]
    return (f"one project floods its function, another's latency (SECURITY.md 22; B's hello via /fn, "
            f"n={t['n']} sequential calls; A's function burns 100 ms of CPU per call, concurrency 10 (default), "
            f"flooded by {t['clients']} clients: under the admin's shared 100-call budget, so A's own "
            f"limit and queue refuse it)",
            f"flooded ÷ alone: p50 **{r50:.2f}×**, p99 **{r99:.2f}×**; B flooded: p50 {f50:.2f} ms, "
            f"p99 {f99:.2f} ms, {ok_b}/{len(f['statuses'])} answered 200; A meanwhile: {statuses} "
            f"({c['retry_after']} of the 429s with Retry-After){'' if overlap else '; the flood did not span the calls'}",
            f"B alone, same server, just before: p50 {a50:.2f} ms, p99 {a99:.2f} ms",
            "≤ 2× (p50 and p99); A gets 429",
            verdict(("p50", r50 <= 2), ("p99", r99 <= 2), ("429", c["statuses"].get(429, 0) > 0),
                    ("B all 200", ok_b == len(f["statuses"])),
                    ("flood spanned B's calls", overlap)))


# ---------------------------------------------------------------- baselines

def ensure_venv():
    if os.path.exists(VENV_PYTHON) and subprocess.run(
            [VENV_PYTHON, "-c", "import uvicorn, uvloop, httptools"], capture_output=True).returncode == 0:
        return
    subprocess.run([PYTHON, "-m", "venv", VENV], check=True)
    subprocess.run([VENV_PYTHON, "-m", "pip", "install", "-q", "uvicorn", "uvloop", "httptools"], check=True,
                   timeout=600)


def versions():
    out = subprocess.run([VENV_PYTHON, "-c", "import uvicorn, uvloop, httptools; "
                          "print(uvicorn.__version__, uvloop.__version__, httptools.__version__)"],
                         capture_output=True, text=True).stdout.split()
    return dict(zip(("uvicorn", "uvloop", "httptools"), out))


def uvicorn(code, workers, seconds):
    port = free_port()
    env = dict(os.environ, BENCH_CODE_DIR=code)
    proc = subprocess.Popen(
        [VENV_PYTHON, "-m", "uvicorn", "--app-dir", os.path.join(BENCH, "baselines"), "asgi_hello:app",
         "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/fn/bench/hello"
        wait_http(url)
        wrk(url, seconds=2)
        result = wrk(url, seconds=seconds)
        if workers == 1:
            time.sleep(0.5)
            result["memory"] = smaps(proc.pid)
        return result
    finally:
        stop_group(proc)


def process_per_call_wrk(code, seconds):
    proc = subprocess.Popen([PYTHON, os.path.join(BENCH, "baselines", "process_per_call.py"),
                             "--code-dir", code, "--max-seconds", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            raise SystemExit("the process-per-call server did not start")
        url = m.group(1) + "/fn/bench/hello"
        wait_http(url)
        return wrk(url, seconds=seconds)
    finally:
        stop_group(proc)


# ---------------------------------------------------------------- report

def verdict(*checks):
    """checks: (label, ok) pairs -> "yes", "no" or per-part."""
    oks = [ok for _, ok in checks]
    if all(oks):
        return "yes"
    if not any(oks):
        return "no"
    return ", ".join(f"{label} {'yes' if ok else 'no'}" for label, ok in checks)


def load_text(r):
    return f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"


def micro_bench():
    """(g) Route match and event encoding, with criterion: the median time
    per operation of each case, in ns."""
    out = subprocess.run(["cargo", "bench", "-p", "kumo-server", "--bench", "hot_path", "--", "--noplot"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit("cargo bench failed:\n" + out.stderr[-3000:])
    units = {"ps": 0.001, "ns": 1.0, "µs": 1000.0, "us": 1000.0, "ms": 1e6}
    results = {}
    name = None
    for line in out.stdout.splitlines():
        m = re.match(r"^(\S+/\S+)\s*(time:.*)?$", line.strip())
        if m and "/" in m.group(1) and not line.startswith(" "):
            name = m.group(1)
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if t and name:
            results[name] = float(t.group(1)) * units.get(t.group(2), float("nan"))
            name = None
    if not results:
        raise SystemExit("could not read criterion's output:\n" + out.stdout[-3000:])
    return results


def build_label():
    return "binary " + KUMO if os.environ.get("KUMO_BIN") else "release build"


def tenant_only():
    """`bench/run tenant`: only the tenant row; replaces that row of the
    table in BENCHMARKS.md (or adds it at the table's end), saying so."""
    if not os.environ.get("KUMO_BIN"):
        subprocess.run(["cargo", "build", "--release", "-p", "kumo"], cwd=ROOT, check=True)
    began = time.time()
    print("Kumo: one project flooded, another's latency (SECURITY.md 22)", flush=True)
    row = list(tenant_row(tenant_isolation()))
    row[0] += (f" — run alone: `bench/run tenant`, {time.strftime('%Y-%m-%d')}, {build_label()}, "
               f"{os.cpu_count()} cores, {time.time() - began:.0f} s")
    line = f"| {' | '.join(row)} |"
    print(line)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else ""
    m = re.search(r"<!-- bench:start -->.*?<!-- bench:end -->", text, flags=re.S)
    if not m:
        print("\n(no bench markers in BENCHMARKS.md; row not written)")
        return
    lines = m.group(0).split("\n")
    at = [i for i, x in enumerate(lines) if x.startswith("| one project floods its function")]
    if at:
        lines[at[0]] = line
    else:
        lines.insert(len(lines) - 1, line)
    text = text[:m.start()] + "\n".join(lines) + text[m.end():]
    open(path, "w").write(text)
    print("\nBENCHMARKS.md updated (the tenant row)")


def main():
    args = sys.argv[1:]
    if args == ["tenant"]:
        return tenant_only()
    if args:
        raise SystemExit("usage: bench/run [tenant]")
    if not os.path.exists("/usr/bin/wrk"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    ensure_venv()
    if not os.environ.get("KUMO_BIN"):
        subprocess.run(["cargo", "build", "--release", "-p", "kumo"], cwd=ROOT, check=True)
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    began = time.time()
    code = tempfile.mkdtemp(prefix="kumo-bench-code-")
    with open(os.path.join(code, "main.py"), "w") as f:
        f.write(HELLO)

    def phase(name):
        print(f"[{time.time() - began:6.1f} s] {name}", flush=True)

    try:
        # (a), cold start variant 1, deploy -> 200, memory of an instance:
        # one server, default pre-warming, a long keep-alive.
        phase("Kumo: warm load, idle instance memory, cold starts (pre-warmed), deploy -> 200")
        server = Server("--keep-alive-ms", "600000")
        try:
            deploy(server, "bench", "hello", concurrency=16)
            url = server.base + "/fn/bench/hello"
            # Warm every instance the load will use (16 connections), so the
            # measured phase has no cold starts in it.
            wrk(url, seconds=3)
            warm = wrk(url, seconds=seconds)
            single = wrk(url, seconds=max(3, seconds // 2), connections=1, threads=1)
            time.sleep(1)
            instance = instance_memory(server.proc.pid)
            cold_warm = cold_starts(server, "cold")
            d200 = deploy_to_200(server)
            # Node.js sandboxes take longer to start (~150 ms here), so the
            # pool refills slower than deploys come: pace the deploys.
            cold_node = cold_starts_paced(server, "coldjs", "node")
        finally:
            server.stop()

        phase("bare runner: warm calls and starts, no server, no sandbox")
        bare = bare_runner(code)
        bare_start = bare_runner_start(code)

        phase("(b) uvicorn + uvloop + httptools, 1 worker")
        uv1 = uvicorn(code, 1, seconds)
        phase("(b) uvicorn + uvloop + httptools, 2 workers")
        uv2 = uvicorn(code, 2, seconds)
        phase("(c) process per call")
        ppc_seconds = max(3, min(5, seconds // 2))
        ppc = process_per_call_wrk(code, ppc_seconds)

        phase("Kumo: cold starts woken from zero (--keep-alive-ms 300)")
        server = Server("--keep-alive-ms", str(WAKE_KEEP_ALIVE_MS))
        try:
            wake = woken_from_zero(server)
        finally:
            server.stop()

        phase("Kumo: cold starts without pre-warming (--prewarm 0)")
        server = Server("--keep-alive-ms", "600000", "--prewarm", "0")
        try:
            cold_scratch = cold_starts(server, "cold")
        finally:
            server.stop()

        phase(f"Kumo: server memory with {MANY_N} functions (--keep-alive-ms 300)")
        server = Server("--keep-alive-ms", str(WAKE_KEEP_ALIVE_MS))
        try:
            many = many_functions(server)
        finally:
            server.stop()

        phase("Kumo: one project flooded, another's latency (SECURITY.md 22; default server)")
        tenant = tenant_isolation()
    finally:
        subprocess.run(["rm", "-rf", code])
        phase("(g) micro-benchmark: route match + event encoding (criterion)")
        micro = micro_bench()
    phase("done")

    over_p50 = (single["p50_ms"] - bare["p50_ms"]) * 1000
    over_p99 = (single["p99_ms"] - bare["p99_ms"]) * 1000
    r1 = warm["rps"] / uv1["rps"]
    r2 = warm["rps"] / uv2["rps"]
    rc = warm["rps"] / ppc["rps"] if ppc["rps"] else float("inf")
    uss_limit = 12e6 / 1024  # 12 MB in kB

    def cold_row(label, c, baseline):
        return (f"Python cold start, fully sandboxed: {label} (n={c['n']}, server-measured)",
                f"p50 {c['server_p50']:.1f} ms, p99 {c['server_p99']:.1f} ms "
                f"(client-measured p50 {c['client_p50']:.1f} ms, p99 {c['client_p99']:.1f} ms)",
                baseline, "p50 ≤ 3 ms, p99 ≤ 15 ms",
                verdict(("p50", c["server_p50"] <= 3), ("p99", c["server_p99"] <= 15)))

    bare_start_text = (f"same runner started with no sandbox (spawn → hello → load → first answer, n={bare_start['n']}): "
                       f"p50 {bare_start['p50']:.1f} ms, p99 {bare_start['p99']:.1f} ms")
    rows = [
        ("warm req/s, (a) ÷ (b): hello via /fn, wrk -t2 -c16",
         f"**{r1:.2f}**; (a) {load_text(warm)}",
         f"(b) uvicorn + uvloop + httptools, raw ASGI, **1 worker**: {load_text(uv1)}",
         "≥ 1.0", verdict(("", r1 >= 1.0))),
        ("warm req/s, (a) ÷ (b, 2 workers): same load",
         f"**{r2:.2f}**; (a) {warm['rps']:.0f} req/s",
         f"(b) uvicorn, **2 workers** (this machine has {os.cpu_count()} cores): {load_text(uv2)}",
         "≥ 1.0", verdict(("", r2 >= 1.0))),
        ("warm hello via /fn, one connection (wrk -t1 -c1)",
         load_text(single),
         f"bare runner, no server, no sandbox: p50 {bare['p50_ms']:.3f} ms, p99 {bare['p99_ms']:.3f} ms",
         "—", "—"),
        ("platform overhead per warm call (c=1 minus bare runner)",
         f"p50 {over_p50:.0f} µs, p99 {over_p99:.0f} µs",
         f"bare runner p50 {bare['p50_ms'] * 1000:.0f} µs, p99 {bare['p99_ms'] * 1000:.0f} µs",
         "p50 ≤ 150 µs, p99 ≤ 1 ms", verdict(("p50", over_p50 <= 150), ("p99", over_p99 <= 1000))),
        cold_row("freshly deployed, pre-warming on (`--prewarm 2`)", cold_warm, bare_start_text),
        cold_row("woken from zero, pre-warming on", wake, "—"),
        cold_row("without pre-warming (`--prewarm 0`)", cold_scratch, bare_start_text),
        (f"Node.js cold start, fully sandboxed, pre-warmed (n={cold_node['n']}, 0.3 s apart, server-measured)",
         f"p50 {cold_node['server_p50']:.1f} ms, p99 {cold_node['server_p99']:.1f} ms "
         f"(client-measured p50 {cold_node['client_p50']:.1f} ms, p99 {cold_node['client_p99']:.1f} ms)",
         "—", "p50 ≤ 10 ms", verdict(("p50", cold_node["server_p50"] <= 10))),
        (f"deploy → first 200 (n={d200['n']})",
         f"p50 {d200['p50']:.1f} ms, p99 {d200['p99']:.1f} ms", "—",
         "≤ 100 ms", verdict(("p50", d200["p50"] <= 100), ("p99", d200["p99"] <= 100))),
        (f"idle warm instance, memory it does not share (USS; median of {instance['n']} instances)",
         f"whole instance ({instance['processes']} processes: helper, init, runner): {mem_text(instance['total'])}; "
         f"runner alone: {mem_text(instance['runner'])}",
         f"same runner, no sandbox: {mem_text(bare['memory'])}; uvicorn, 1 worker: {mem_text(uv1['memory'])}",
         "≤ 12 MB (not a zygote)", verdict(("", instance["total"]["uss"] <= uss_limit))),
        (f"server process with {many['n']:,} deployed idle functions",
         f"never called: {mem_text(many['deployed'])}; each called once, then scaled to zero: "
         f"{mem_text(many['called'])} (deploys took {many['deploy_s']:.0f} s, 4 at a time)",
         f"same server right after start, no functions: {mem_text(many['start'])}",
         "—", "—"),
        ("throughput (a) ÷ (c)",
         f"**{rc:.0f}**; (a) {warm['rps']:.0f} req/s",
         f"(c) process per call, wrk -t2 -c16 for {ppc['seconds']} s: {load_text(ppc)}",
         "≥ 50", verdict(("", rc >= 50))),
        tenant_row(tenant),
    ]
    def ns(name):
        value = micro.get(name)
        return "?" if value is None else f"{value:,.0f} ns"

    lookups = [k for k in micro if k.startswith("route_lookup/") and k != "route_lookup/mix_of_8"]
    lookup_text = ", ".join(k.split("/", 1)[1] + " " + ns(k) for k in lookups)
    rows.append((
        "route match + event encoding (criterion, median per operation)",
        f"route lookup in 100 routes: {lookup_text}; "
        f"encode_event: GET with 10 headers {ns('encode_event/get_10_headers_query')}, "
        f"POST 1 KiB JSON {ns('encode_event/post_1k_json')}; "
        f"both: GET {ns('lookup_and_encode/get_10_headers_query')}, POST {ns('lookup_and_encode/post_1k_json')}",
        "—", "—", "—"))
    table = "\n".join(f"| {' | '.join(r)} |" for r in rows)
    stamp = time.strftime("%Y-%m-%d")
    v = versions()
    header = (f"Last run: {stamp}, `bench/run`, {build_label()}, "
              f"{os.cpu_count()} cores, "
              f"BENCH_SECONDS={seconds}, {time.time() - began:.0f} s. "
              f"Baselines: uvicorn {v.get('uvicorn', '?')}, uvloop {v.get('uvloop', '?')}, "
              f"httptools {v.get('httptools', '?')} on {PYTHON} (1 worker, and 2 workers in the second row); "
              f"process per call on {PYTHON} -I -S.")
    section = (f"<!-- bench:start -->\n{header}\n\n"
               f"| measure | Kumo | baseline (same run) | target | met? |\n|---|---|---|---|---|\n{table}\n"
               f"<!-- bench:end -->")
    print()
    print(header)
    print()
    print("| measure | Kumo | baseline (same run) | target | met? |")
    print("|---|---|---|---|---|")
    print(table)
    for name, r in (("Kumo -c16", warm), ("Kumo -c1", single), ("uvicorn 1 worker", uv1),
                    ("uvicorn 2 workers", uv2), ("process per call", ppc)):
        if r["non2xx"] or r["socket_errors"]:
            print(f"warning: {name}: {r['non2xx']} non-2xx responses, socket errors: {r['socket_errors'] or 'none'}")
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
