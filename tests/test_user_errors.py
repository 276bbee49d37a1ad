"""A clumsy user's mistakes, through the real `gra` command: one clear line, exit 2,
no traceback, and nothing written that forces a `--resume` later.

Covers issue 14: a second run on a directory in use, bad numbers on the command
line, an unusable `--out`, a corrupt record in the middle of an output file, and
a resume whose target is already met.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, scripted_config

pytestmark = pytest.mark.guarantee  # README, Reliability

LOCK_PROBE = """
import sys, time
from pathlib import Path
from gra.supervisor.outdir_lock import lock_out_dir
with lock_out_dir(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _env(delay_s: float = 0.02) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "GRA_DOUBLE_DELAY_S": str(delay_s)}


def gra(
    *args: str, timeout: float = 180, delay_s: float = 0.02
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gra", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(delay_s),
    )


def assert_user_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, no traceback, and a last line that holds every fragment."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    last = done.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every data file of a run (not its logs nor its lock file), byte for byte."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(out).parts and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished one-round run of target 3: its config and output directory."""
    base = tmp_path_factory.mktemp("finished")
    config = scripted_config(base, ["a", "b", "c"], target=3)
    out = base / "out"
    done = gra("run", str(config), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    return config, out


def copy_run(finished_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    config, out = finished_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return config, copy


# ---- 2. bad numbers on the command line -----------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_bad_target_is_refused_before_anything_is_written(tmp_path: Path, value: str) -> None:
    config = scripted_config(tmp_path, ["a", "b"])
    out = tmp_path / "out"
    done = gra("run", str(config), "--out", str(out), "--target", value, "--no-progress")
    assert_user_error(done, "--target", value)
    assert not out.exists(), "a refused run left a directory behind"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--capacity", "0"),
        ("--n-ctx", "-1"),
        ("--n-threads", "0"),
        ("--prompt-cache-mib", "-1"),
        ("--output-retries", "-2"),
    ],
)
def test_bad_agent_numbers_are_refused(option: str, value: str) -> None:
    done = gra(
        "agent", "--connect", "ipc:///nowhere", "--backend", "sandbox", "--model", "m",
        option, value,
    )  # fmt: skip
    assert_user_error(done, option, value)


# ---- 3. an unusable --out -------------------------------------------------------


def test_out_that_is_a_file(tmp_path: Path) -> None:
    config = scripted_config(tmp_path, ["a", "b"])
    out = tmp_path / "taken"
    out.write_text("not a directory\n")
    done = gra("run", str(config), "--out", str(out), "--no-progress")
    assert_user_error(done, str(out), "not a directory")
    assert out.read_text() == "not a directory\n"


def test_out_under_a_file(tmp_path: Path) -> None:
    config = scripted_config(tmp_path, ["a", "b"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "run"
    done = gra("run", str(config), "--out", str(out), "--no-progress")
    assert_user_error(done, str(out), "not a directory")


def test_review_out_that_is_a_file(tmp_path: Path) -> None:
    config = scripted_config(tmp_path, ["a", "b"])
    out = tmp_path / "taken"
    out.write_text("x")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"instruction": "Add.", "response": "1 + 1"}) + "\n")
    done = gra("review", str(config), "--input", str(pairs), "--out", str(out), "--no-progress")
    assert_user_error(done, str(out), "not a directory")


def _can_mount_read_only(directory: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none '{directory}'"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.parametrize("inside", [False, True])
def test_out_on_a_read_only_file_system(tmp_path: Path, inside: bool) -> None:
    """Root ignores file modes, so the read-only directory is a read-only tmpfs mounted
    in a private mount namespace (skipped where that is not allowed)."""
    shutil.which("unshare") or pytest.skip("no unshare")
    mount = tmp_path / "ro"
    mount.mkdir()
    if not _can_mount_read_only(mount):
        pytest.skip("cannot mount a read-only tmpfs here")
    config = scripted_config(tmp_path, ["a", "b"])
    out = mount / "run" if inside else mount
    script = (
        f"mount -t tmpfs -o ro none '{mount}' && "
        f"exec '{sys.executable}' -m gra run '{config}' --out '{out}' --no-progress"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert_user_error(done, str(out), "Read-only file system")


# ---- 1. one run per output directory --------------------------------------------


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the first run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_second_run_on_a_directory_in_use_is_refused(tmp_path: Path) -> None:
    config = scripted_config(tmp_path, ["a", "b", "c"], target=500, max_instances=500)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gra", "run", str(config), "--out", str(out)]
    first = subprocess.Popen(
        [*command, "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "first.stderr").open("wb"),
        env=_env(0.2),
        start_new_session=True,
    )
    try:
        _wait_for(lambda: (out / "journal.jsonl").exists(), 60, "the journal", first)
        lock = out / ".lock"
        assert str(first.pid) in lock.read_text()
        before = (out / "journal.jsonl").read_bytes()

        again = gra(*command[3:], "--resume", "--no-progress")
        assert_user_error(again, str(out), f"pid {first.pid}", "in use")
        fresh = gra(*command[3:], "--no-progress")
        assert_user_error(fresh, str(out), f"pid {first.pid}")
        # Neither wrote a line: the journal only grew by the first run's own entries.
        assert (out / "journal.jsonl").read_bytes().startswith(before)
        starts = [e for e in read_jsonl(out / "journal.jsonl") if e["t"] == "run"]
        assert len(starts) == 1

        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
    # The dead holder's pid is still in the file, but the kernel released its lock.
    probe = subprocess.run(
        [sys.executable, "-c", LOCK_PROBE, str(out), "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert probe.returncode == 0 and "locked" in probe.stdout, probe.stderr[-2000:]


def test_lock_holder_refuses_a_resume_and_names_itself(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_PROBE, str(out), "60"],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        config = scripted_config(tmp_path, ["a", "b"])
        done = gra("run", str(config), "--out", str(out), "--resume", "--no-progress")
        assert_user_error(done, str(out), f"pid {holder.pid}")
        assert not (out / "journal.jsonl").exists()
        assert not (out / "logs").exists()
    finally:
        holder.kill()
        holder.wait(10)


# ---- 4. a corrupt record in the middle of a file -----------------------------------


def _insert_garbage(path: Path, at_line: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) >= at_line, f"{path} has too few lines"
    lines.insert(at_line - 1, b'{"id": "r1-0000\x00 garbage not json\n')
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize(
    "name",
    ["accepted.jsonl", "rejected.jsonl", "journal.jsonl", "round-1/candidates.jsonl"],
)
def test_corrupt_record_in_the_middle_is_named_and_nothing_changes(
    finished_run: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    config, out = copy_run(finished_run, tmp_path)
    path = out / name
    if name == "rejected.jsonl" and len(read_jsonl(path)) < 1:
        # Every item passed: give the file a whole record after the garbage.
        record = dict(read_jsonl(out / "accepted.jsonl")[0], id="r1-999999")
        record.update(decision="rejected", stage="score")
        path.write_text(json.dumps(record) + "\n")
    _insert_garbage(path, 1 if name == "rejected.jsonl" else 2)
    before = snapshot(out)
    done = gra("run", str(config), "--out", str(out), "--resume", "--target", "6")
    line = 1 if name == "rejected.jsonl" else 2
    assert_user_error(done, f"{path}:{line}:", "corrupt")
    assert snapshot(out) == before, "a refused resume changed the directory"


# ---- 5. a resume whose target is already met ---------------------------------------


def test_resume_of_a_met_target_says_so_and_starts_nothing(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config, out = copy_run(finished_run, tmp_path)
    accepted = len(read_jsonl(out / "accepted.jsonl"))
    before = snapshot(out)
    done = gra("run", str(config), "--out", str(out), "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"target 3 already met: {accepted} accepted; raise --target to continue" in done.stdout
    assert snapshot(out) == before
    assert not (out / "round-2").exists()


def test_resume_with_a_higher_target_continues_the_round(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config, out = copy_run(finished_run, tmp_path)
    done = gra("run", str(config), "--out", str(out), "--resume", "--target", "8", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    journal = read_jsonl(out / "journal.jsonl")
    rounds = {e["round"] for e in journal if e["t"] == "start"}
    assert rounds == {1}, f"a resume started rounds {sorted(rounds)}; the config asks for one"
    assert not (out / "round-2").exists()
    accepted = read_jsonl(out / "accepted.jsonl")
    ids = [r["id"] for r in accepted]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    assert all(r["round"] == 1 for r in accepted)
    assert len(read_jsonl(out / "round-1" / "accepted.jsonl")) == len(ids)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["accepted"] == len(ids)
