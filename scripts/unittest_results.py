"""Runs the unittest tests under a directory, as `python -m unittest
discover -s DIR -p 'test_*.py'` does, and leaves its counts for
scripts/summary.py: OUT.defined (how many tests were discovered, written
before any runs) and OUT.json (what happened, written at the end; absent
if the run died).

Usage: python3 scripts/unittest_results.py DIR OUT
"""

import json
import sys
import unittest

start, out = sys.argv[1], sys.argv[2]
suite = unittest.TestLoader().discover(start, pattern="test_*.py")
with open(out + ".defined", "w") as f:
    f.write(str(suite.countTestCases()))
result = unittest.TextTestRunner(verbosity=1).run(suite)
with open(out + ".json", "w") as f:
    json.dump(
        {
            "ran": result.testsRun,
            "failures": len(result.failures),
            "errors": len(result.errors),
            "skipped": len(result.skipped),
            "unexpected_successes": len(result.unexpectedSuccesses),
        },
        f,
    )
sys.exit(0 if result.wasSuccessful() and not result.skipped else 1)
