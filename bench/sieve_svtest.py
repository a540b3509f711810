"""Run every `.svtest` file (Pigeonhole's Sieve test-suite format, `vnd.dovecot.testsuite`) in a folder with
our Sieve implementation, and say how many pass.

    .venv/bin/python bench/sieve_svtest.py DIR [--quiet]

Each file's report is printed as Pigeonhole's `testsuite` tool prints it ("Test case: ...", one line per
test block, "PASS: ..." or "FAIL: ..."); then the blocks in all ("blocks: S succeeded, F failed") and, last,
the files: "N passed, M failed" (a file passes when it compiled, ran to its end and every block
succeeded). The runner is tests/sieve/testsuite.py (test-only: it is not part of the server). Exit status 0
when every file passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sieve.testsuite import run_directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--quiet", action="store_true", help="only the failing files' reports and the totals")
    args = parser.parse_args(argv)
    reports = run_directory(args.directory)
    blocks = failed_blocks = 0
    for report in reports:
        blocks += report.tests
        failed_blocks += sum("FAILED" in line and "CASE" not in line for line in report.lines)
        if not args.quiet or not report.passed:
            print(report.text())
            print()
    passed = sum(report.passed for report in reports)
    print(f"blocks: {blocks - failed_blocks} succeeded, {failed_blocks} failed")
    print(f"{passed} passed, {len(reports) - passed} failed")
    return 0 if passed == len(reports) else 1


if __name__ == "__main__":
    sys.exit(main())
