"""The dataset card written on export: parsed by huggingface_hub, numbers from the run,
and the exported data read back by `datasets` through the card's own config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

from gra.data.card import CARD_MARKER, size_category, without_secrets
from tests.conftest import ROOT, scripted_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real short run of scripted agents, through the CLI."""
    base = tmp_path_factory.mktemp("card")
    config = scripted_config(base, ["a", "b", "c"], target=6, max_in_flight=3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRA_DOUBLE_DELAY_S": "0.01"}
    out = base / "run"
    done = subprocess.run(
        [sys.executable, "-m", "gra", "run", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def export(run_dir: Path, out: Path, fmt: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gra", "export", str(run_dir), "--out", str(out), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    ("fmt", "name", "card_at"),
    [("jsonl", "train.jsonl", "."), ("parquet", "train.parquet", "."), ("hf", "ds", "ds")],
)
def test_card_parses_and_its_numbers_match_the_run(
    run_dir: Path, tmp_path: Path, fmt: str, name: str, card_at: str
) -> None:
    out = tmp_path / "export" / name
    stdout = export(run_dir, out, fmt)
    card_path = tmp_path / "export" / card_at / "README.md"
    assert str(card_path) in stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    accepted = summary["counts"]["accepted"]

    card = DatasetCard.load(card_path)
    meta = card.data.to_dict()
    assert meta["license"] == "unknown"  # left for the user
    assert meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == [size_category(accepted)] == ["n<1K"]
    data_files = meta["configs"][0]["data_files"][0]
    assert data_files["split"] == "train"
    assert CARD_MARKER in card.text
    assert f"accepted: {accepted}" in card.text
    assert f"{accepted} instruction/response pairs" in card.text
    # The models, each with its file hash or backend, and the protocol's settings.
    for model in ("| a | plugin |", "| b | plugin |", "| c | plugin |"):
        assert model in card.text
    assert '"tau": 8.0' in card.text
    # The data read back by `datasets`, through the config the card declares (a
    # save_to_disk directory is refused by load_dataset: its files are read with the
    # card's glob, and the directory by load_from_disk).
    root = tmp_path / "export" / card_at
    if fmt == "hf":
        assert len(datasets.load_from_disk(str(root))) == accepted
        files = str(root / data_files["path"])
        loaded = datasets.load_dataset("arrow", data_files=files, split="train")
    else:
        loaded = datasets.load_dataset(str(root), split="train")
    assert len(loaded) == accepted
    ids = {json.loads(line)["id"] for line in (run_dir / "accepted.jsonl").open()}
    assert set(loaded["id"]) == ids  # each row leads back to its full record


def test_someone_elses_readme_is_kept(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("my project\n")
    stdout = export(run_dir, tmp_path / "train.jsonl", "jsonl")
    assert (tmp_path / "README.md").read_text() == "my project\n"
    assert (tmp_path / "DATASET_CARD.md").is_file() and "DATASET_CARD.md" in stdout


def test_secrets_are_left_out_of_the_config() -> None:
    config = {
        "bus": {"curve_keys": "keys", "endpoint": "tcp://0.0.0.0:5555"},
        "agents": [
            {"model": "m", "url": "http://user:hunter2@gpu:8000/v1", "api_token": "abc"},
            {"model": "n", "api_key_env": "OPENAI_API_KEY", "password": "x"},
        ],
    }
    clean = without_secrets(config)
    text = json.dumps(clean)
    assert "hunter2" not in text and "abc" not in text and '"password"' not in text
    assert clean["agents"][0]["url"] == "http://gpu:8000/v1"
    assert clean["agents"][1]["api_key_env"] == "OPENAI_API_KEY"  # a name, not a secret
    assert size_category(999) == "n<1K" and size_category(1000) == "1K<n<10K"
