"""Our `.svtest` scripts (tests/sieve/svtest/, Pigeonhole's test-suite format) run with the runner of
tests/sieve/testsuite.py: every file passes, every block of it succeeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.sieve.testsuite import run_file

SVTEST = Path(__file__).parent / "svtest"
FILES = sorted(SVTEST.rglob("*.svtest"))


def test_there_are_svtest_files() -> None:
    assert len(FILES) >= 2


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SVTEST)))
def test_svtest_file_passes(path: Path) -> None:
    report = run_file(path)
    assert report.passed, report.text()
    assert not any("FAILED" in line for line in report.lines), report.text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "case.svtest"
    path.write_text('require "vnd.dovecot.testsuite";\n' + text)
    return path


def test_a_failing_block_is_reported_and_the_next_block_still_runs(tmp_path: Path) -> None:
    report = run_file(
        write(
            tmp_path,
            'test "first" { if header :is "subject" "Frop!" { test_fail "it says Frop"; } keep; }\n'
            'test "second" { if true { } }\n',
        )
    )
    assert report.lines == (" 1: Test 'first' FAILED: it says Frop", " 2: Test 'second' SUCCEEDED")
    assert not report.passed
    assert report.text().endswith("FAIL: 1 of 2 tests failed.")


def test_a_runtime_error_of_the_file_itself_ends_the_case(tmp_path: Path) -> None:
    report = run_file(write(tmp_path, 'require "ihave";\ntest "a" { error "boom"; }\ntest "b" { }\n'))
    assert report.tests == 1
    assert report.lines[-1] == "XX: Test CASE FAILED: test script execution aborted due to error"
    assert not report.passed


def test_a_file_that_does_not_compile_fails_as_a_case(tmp_path: Path) -> None:
    report = run_file(write(tmp_path, 'test "a" { frop; }\n'))
    assert report.lines[-1] == "XX: Test CASE FAILED: failed to compile testcase script"
    assert 'unknown command "frop"' in report.lines[0]
    assert not report.passed


def test_the_bench_runner_ends_with_the_counts(tmp_path: Path) -> None:
    write(tmp_path, 'test "x" { test_fail "no"; }\n')
    (tmp_path / "good.svtest").write_text('require "vnd.dovecot.testsuite";\ntest "y" { }\n')
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "sieve_svtest.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[-2:] == ["blocks: 1 succeeded, 1 failed", "1 passed, 1 failed"]


def test_the_names_of_older_pigeonhole_revisions_are_understood(tmp_path: Path) -> None:
    (tmp_path / "script.sieve").write_text('require "fileinto"; fileinto "A"; keep;\n')
    report = run_file(
        write(
            tmp_path,
            'test_mailbox :create "A";\n'
            'test "old names" {\n'
            '  if not test_compile "script.sieve" { test_fail "no compile"; }\n'
            '  test_binary :save "b"; test_binary :load "b";\n'
            '  if not test_execute { test_fail "no run"; }\n'
            '  if not test_result :index 1 "store" { test_fail "no store"; }\n'
            '  if not test_result_execute { test_fail "not carried out"; }\n'
            '  if not test_message :folder "A" 0 { test_fail "nothing in A"; }\n'
            "}\n",
        )
    )
    assert report.lines == (" 1: Test 'old names' SUCCEEDED",), report.text()
