"""Guarantee tests may not skip in CI.

A test marked ``guarantee`` proves a guarantee of the README's Reliability
section. Some of them need what only some machines offer (root, to mount a
tiny tmpfs or to make network namespaces) and skip elsewhere, which is fine
on a laptop. In CI (``CI=true``, as CI services set it) such a skip would
leave a guarantee unproven behind a green run, so there a skipped guarantee
test is reported as failed, with the reason it gave for skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "guarantee"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: proves a README guarantee; with CI=true a skip of it fails the run",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and in_ci() and item.get_closest_marker(MARKER)):
        return
    if hasattr(report, "wasxfail"):
        return  # an expected failure, not a skip
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"a guarantee test may not skip with CI=true: {reason}"
