"""With CI=true a skipped guarantee test fails the run (tests/guarantees.py).

The hook is exercised the way CI meets it: a pytest run in a subprocess, over
test cases that skip in their body, in a fixture (as the root-only tests do),
or are no guarantee at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CASES = """
import pytest


@pytest.fixture
def tiny_disk():
    pytest.skip("cannot mount a tmpfs here")


@pytest.mark.guarantee
def test_partition():
    pytest.skip("cannot create network namespaces here")


@pytest.mark.guarantee
def test_disk_full(tiny_disk):
    pass


@pytest.mark.guarantee
def test_proven():
    pass


def test_optional():
    pytest.skip("not a guarantee")


@pytest.mark.guarantee
@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    raise AssertionError
"""


def run_cases(tmp_path: Path, ci: str | None) -> tuple[int, str]:
    (tmp_path / "conftest.py").write_text(
        "from tests.guarantees import pytest_configure, pytest_runtest_makereport  # noqa\n"
    )
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:asyncio"),
            *("-rA", "-W", "error::pytest.PytestUnknownMarkWarning", "."),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_guarantee_test_may_skip(tmp_path: Path, ci: str | None) -> None:
    code, output = run_cases(tmp_path, ci)
    assert code == 0, output
    assert "1 passed, 3 skipped, 1 xfailed" in output


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_in_ci_a_skipped_guarantee_test_fails_the_run(tmp_path: Path, ci: str) -> None:
    code, output = run_cases(tmp_path, ci)
    assert code == 1, output
    assert (
        "FAILED test_cases.py::test_partition - a guarantee test may not skip with CI=true: "
        "Skipped: cannot create network namespaces here"
    ) in output
    assert "ERROR test_cases.py::test_disk_full - a guarantee test may not skip" in output
    assert "cannot mount a tmpfs here" in output
    assert "PASSED test_cases.py::test_proven" in output
    assert "SKIPPED [1] test_cases.py" in output and "not a guarantee" in output
    assert "XFAIL test_cases.py::test_expected_to_fail" in output
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in output


def test_the_root_only_tests_are_guarantee_tests() -> None:
    """The tests that skip without root are the ones CI must not let skip."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
            "-m",
            "guarantee",
            "tests/test_disk_full.py",
            "tests/test_chaos.py",
            "tests/test_user_errors.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = done.stdout
    assert "tests/test_disk_full.py::test_disk_full_stops_cleanly_and_resumes" in collected
    assert "tests/test_chaos.py::test_network_partition_between_hosts" in collected
    assert "tests/test_user_errors.py::test_out_on_a_read_only_file_system" in collected
