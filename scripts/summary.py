"""The summary of scripts/test, built from each runner's own results.

Usage: python3 scripts/summary.py RESULTS_DIR

RESULTS_DIR holds, for each suite scripts/test ran, what its runner left:

- python.defined, python.json: how many tests unittest discovered before
  running, and its counts after (written by scripts/unittest_results.py);
- NAME.tap: the TAP stream of a `node --test` run (node, browser);
- rust.bins: the Rust test binaries (one path a line), rust.log: the
  output of `cargo test`; each binary is asked how many tests it defines
  (`--list --format terse`) and matched with its `test result:` line;
- NAME.status: the suite's exit status.

A test counts as passed only if its runner says it passed. Everything
else a suite defines counts as failed: failures, errors, timeouts
(Node's "cancelled"), skipped and todo tests, ignored Rust tests, and
tests that never reported because their process died (a Rust binary
killed by a signal shows fewer results than it defines). A suite that
exited non-zero with nothing counted against it counts as one failure,
so the last line can never read "0 failed" on a red run.

Prints one line per suite, then exactly `N passed, N failed`; exits 1
when anything failed.
"""

import json
import os
import re
import subprocess
import sys


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def status_of(results, name):
    text = read(os.path.join(results, name + ".status"))
    return int(text.strip()) if text and text.strip() else None


def python_suite(results):
    defined_text = read(os.path.join(results, "python.defined"))
    defined = int(defined_text) if defined_text else None
    counts = read(os.path.join(results, "python.json"))
    if counts is None:
        return 0, defined or 1, ["no results (the run died before the end)"]
    c = json.loads(counts)
    bad = c["failures"] + c["errors"] + c["skipped"] + c["unexpected_successes"]
    passed = c["ran"] - bad
    notes = [
        f"ran {c['ran']} of {defined}, {c['failures']} failures, {c['errors']} errors, "
        f"{c['skipped']} skipped, {c['unexpected_successes']} unexpected successes"
    ]
    total = max(defined or 0, c["ran"])
    return passed, total - passed, notes


def tap_suite(results, name):
    tap = read(os.path.join(results, name + ".tap"))
    if tap is None:
        return 0, 1, ["no TAP results"]
    summary = {}
    for line in tap.splitlines():
        m = re.match(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", line)
        if m:
            summary[m.group(1)] = int(m.group(2))
    if "tests" not in summary or "pass" not in summary:
        return 0, 1, ["the TAP stream has no summary (the run died before the end)"]
    passed = summary["pass"]
    notes = [
        ", ".join(f"{summary.get(k, 0)} {k}" for k in ("tests", "pass", "fail", "cancelled", "skipped", "todo"))
    ]
    return passed, summary["tests"] - passed, notes


def defined_tests(binary):
    """How many tests a libtest binary defines, by its own --list."""
    try:
        out = subprocess.run(
            [binary, "--list", "--format", "terse"],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    return sum(1 for line in out.splitlines() if line.endswith(": test")), None


RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored;")


def rust_suite(results):
    bins_text = read(os.path.join(results, "rust.bins"))
    log = read(os.path.join(results, "rust.log")) or ""
    if not bins_text:
        return 0, 1, ["no test binaries were built"]
    # Each section of the log: `Running … (path)` or `Doc-tests crate`,
    # then libtest's `running N tests` and, if it got that far, its
    # `test result:` line.
    sections = {}
    current = None
    for line in log.splitlines():
        m = re.match(r"^\s+Running .*\((.+)\)$", line)
        d = re.match(r"^\s+Doc-tests (\S+)$", line)
        if m:
            current = os.path.basename(m.group(1))
            sections[current] = {"running": None, "result": None}
        elif d:
            current = "doc-tests " + d.group(1)
            sections[current] = {"running": None, "result": None}
        elif current is not None:
            r = re.match(r"^running (\d+) tests?$", line)
            if r and sections[current]["running"] is None:
                sections[current]["running"] = int(r.group(1))
            t = RESULT.match(line)
            if t and sections[current]["result"] is None:
                sections[current]["result"] = tuple(int(x) for x in t.groups())
    passed_all = failed_all = 0
    notes = []
    for binary in bins_text.split():
        name = os.path.basename(binary)
        defined, why = defined_tests(binary)
        section = sections.pop(name, None)
        result = section and section["result"]
        passed, failed, ignored = result or (0, 0, 0)
        if defined is None:
            notes.append(f"{name}: cannot list its tests ({why})")
            defined = max(1, passed + failed + ignored)
        if defined == 0 and result is None and section is None:
            continue  # nothing to run; cargo may skip it in its log
        total = max(defined, passed + failed + ignored)
        not_passed = total - passed
        if result is None:
            notes.append(f"{name}: no test result: defines {defined} tests, the binary died or never ran")
        elif passed + failed + ignored < defined:
            notes.append(f"{name}: {passed + failed + ignored} results for {defined} tests defined")
        elif failed or ignored:
            notes.append(f"{name}: {failed} failed, {ignored} ignored")
        passed_all += passed
        failed_all += not_passed
    for name, section in sections.items():
        if not name.startswith("doc-tests "):
            continue
        running = section["running"]
        if section["result"] is None:
            if running != 0:
                notes.append(f"{name}: no test result")
                failed_all += running or 1
            continue
        passed, failed, ignored = section["result"]
        passed_all += passed
        failed_all += max(running or 0, passed + failed + ignored) - passed
        if failed or ignored:
            notes.append(f"{name}: {failed} failed, {ignored} ignored")
    return passed_all, failed_all, notes


def main():
    results = sys.argv[1]
    suites = [s for s in ("python", "node", "rust", "browser") if os.path.exists(os.path.join(results, s + ".status"))]
    passed_total = failed_total = 0
    for suite in suites:
        if suite == "python":
            passed, failed, notes = python_suite(results)
        elif suite == "rust":
            passed, failed, notes = rust_suite(results)
        else:
            passed, failed, notes = tap_suite(results, suite)
        status = status_of(results, suite)
        if status != 0 and failed == 0:
            notes.append(f"exited with status {status} and no failing test: counted as one failure")
            failed = 1
        elif status != 0:
            notes.append(f"exited with status {status}")
        print(f"{suite}: {passed} passed, {failed} failed" + "".join(f"\n  {n}" for n in notes))
        passed_total += passed
        failed_total += failed
    print(f"{passed_total} passed, {failed_total} failed")
    sys.exit(1 if failed_total else 0)


main()
