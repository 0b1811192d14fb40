"""Kumo Python syntax checker.

Run as `python3.11 -I -S kumo_check.py DIR` to check every *.py file under
DIR (this is how Kumo runs it, inside a sandbox with the deployment mounted
read-only), or as `python3.11 -I -S kumo_check.py` to read one JSON object
from stdin,

    {"files": {"main.py": "source...", "lib/x.py": "..."}}

It compiles every *.py file (nothing is executed) and writes one JSON object
to stdout:

    {"ok": true}
    {"ok": false, "file": "main.py", "line": 3, "column": 5,
     "message": "invalid syntax", "text": "def f(:"}

The error reported is the first one in sorted path order.  line and column are
1-based; they (and text) are null when the compiler gives no position, e.g.
for a source containing a NUL byte.  Exit status is 0 in both cases and 1 only
when the input is malformed.
"""

import json
import sys


def check(files):
    for path in sorted(files):
        if not path.endswith(".py"):
            continue
        try:
            compile(files[path], path, "exec", dont_inherit=True)
        except SyntaxError as e:  # includes IndentationError and TabError
            text = e.text
            if isinstance(text, str):
                text = text.rstrip("\r\n")
            return {"ok": False, "file": path, "line": e.lineno, "column": e.offset,
                    "message": e.msg if isinstance(e.msg, str) else str(e), "text": text}
        except (ValueError, RecursionError, MemoryError, OverflowError) as e:
            # ValueError: NUL bytes, unencodable characters; RecursionError:
            # nesting too deep for the compiler.
            return {"ok": False, "file": path, "line": None, "column": None,
                    "message": str(e) or type(e).__name__, "text": None}
    return {"ok": True}


def read_dir(root):
    """Every *.py under root, as {relative path: source}."""
    import os
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if name.endswith(".py"):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                with open(full, "rb") as f:
                    data = f.read()
                try:
                    files[rel] = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    return None, {"ok": False, "file": rel, "line": None, "column": None,
                                  "message": "not valid UTF-8: %s" % e, "text": None}
    return files, None


def main():
    if len(sys.argv) > 1:
        files, error = read_dir(sys.argv[1])
        result = error or check(files)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        return 0
    try:
        request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        files = request["files"]
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError('"files" must map file paths to source strings')
    except Exception as e:
        sys.stderr.write("kumo-check: malformed input: %s: %s\n" % (type(e).__name__, e))
        return 1
    result = check(files)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
