"""The shipped example configs and seeds stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from gra.config import load_config
from gra.data.seeds import load_seeds

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_example_config_loads(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert len({a.model_id for a in config.agents}) >= 2


def test_example_seeds_cover_the_seven_domains_with_metadata() -> None:
    config = load_config(EXAMPLES / "quickstart.toml")
    assert config.seeds is not None
    seeds = load_seeds(config.resolve(config.seeds.path), config.seeds)
    assert {s.domain for s in seeds} == set(config.annotate.labels)
    assert all(len(s.keywords) == 3 and s.summary for s in seeds)
