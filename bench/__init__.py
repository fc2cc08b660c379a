"""faxmail benchmarks (not tests: nothing here asserts a time). Run with ``bench/run``."""

import sys
from pathlib import Path

# The benchmarks reuse the test infrastructure (tests/infra: Postfix, dnsmasq, DKIM keys,
# milter processes, test PDFs), importable as `infra` once tests/ is on the path.
_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
