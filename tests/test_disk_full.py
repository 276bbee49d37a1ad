"""Disk full mid-run: the run stops with one clear error, leaves no partial
record, and resumes once there is room again. The output directory is a
tiny tmpfs that the test mounts (root only) and later grows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import scripted_config
from tests.test_fleet import check_outputs

pytestmark = pytest.mark.guarantee  # README, Reliability


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_stops_cleanly_and_resumes(tiny_disk: Path, tmp_path: Path, double_env) -> None:
    config = scripted_config(tmp_path, ["a", "b", "c"], target=150)
    out = tiny_disk / "out"
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out), "--no-progress"]
    full = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert full.returncode == 2, full.stderr[-2000:]
    assert "Traceback" not in full.stderr
    assert "No space left on device" in full.stderr and "--resume" in full.stderr
    for name in ("round-1/candidates.jsonl", "rejected.jsonl", "journal.jsonl"):
        text = (out / name).read_text()
        assert not text or text.endswith("\n"), f"{name} ends in a partial line"
        for line in text.splitlines():
            json.loads(line)
    # Committee-accepted items wait in the round's candidates until the round ends.
    written = len((out / "round-1" / "candidates.jsonl").read_text().splitlines())
    assert 0 < written < 150

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    accepted, _ = check_outputs(out, summary)
    assert len(accepted) >= 150
