"""Reviewers weighted by measured reliability: `[protocol] reviewer_weights`.

The paper gives every reviewer an equal say; with weights (as `gra calibrate`
measures them) a reviewer's score counts in proportion to its weight and a
reviewer of weight 0, a judge measured no better than a coin, neither scores
nor vetoes.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from gra.config import ConfigError, load_config
from gra.protocols.peer_review import (
    Generated,
    Policy,
    ProtocolError,
    Reviewed,
    Verdict,
    committee_stats,
    decide,
    score_out_of_reach,
)
from tests.test_peer_review import GEN, ITEM, make_state, outcome, review

WEIGHTED = Policy(reviewer_weights={"r1": 1.0, "r2": 0.0, "r3": 0.5})


def test_without_weights_every_reviewer_counts_alike() -> None:
    assert Policy().weight_of("anyone") == 1.0
    assert decide([review(10), review(4)], Policy()).verdict is Verdict.REJECT_SCORE


def test_a_weighted_mean_follows_the_reliable_reviewer() -> None:
    decision = decide([review(10), review(2)], Policy(), weights=[1.0, 0.0])
    assert decision.verdict is Verdict.ACCEPT
    assert (decision.mean, decision.std) == (10.0, 0.0)
    mean, std = committee_stats([9.0, 6.0], Policy(), [2.0, 1.0])
    assert mean == pytest.approx(8.0)
    assert std == pytest.approx((2 * 1 + 1 * 4) ** 0.5 / 3**0.5)


def test_only_reviewers_with_weight_veto_by_a_failed_check() -> None:
    unreliable = [review(10, failed=["completeness"]), review(10)]
    assert decide(unreliable, Policy(), weights=[0.0, 1.0]).verdict is Verdict.ACCEPT
    assert decide(unreliable, Policy(), weights=[0.5, 1.0]).verdict is Verdict.REJECT_CHECK


def test_all_weights_zero_falls_back_to_equal_say() -> None:
    reviews = [review(10, failed=["completeness"]), review(10)]
    assert decide(reviews, Policy(), weights=[0.0, 0.0]).verdict is Verdict.REJECT_CHECK
    assert committee_stats([10.0, 4.0], Policy(), [0.0, 0.0]) == (7.0, 3.0)


def test_a_model_without_a_weight_counts_as_the_mean_weight() -> None:
    assert WEIGHTED.weight_of("r3") == 0.5
    assert WEIGHTED.weight_of("new-model") == pytest.approx(0.5)


def test_an_unloaded_weights_path_is_refused() -> None:
    with pytest.raises(ProtocolError, match="never loaded"):
        Policy(reviewer_weights="calibration.json").weight_of("r1")


def test_out_of_reach_uses_the_pending_reviewers_weights() -> None:
    # r1 (weight 1) scored 4; r2 (weight 0) is pending and could not lift the mean.
    assert score_out_of_reach([4.0], 2, Policy(), weights=[1.0, 0.0]) is not None
    # Equal say: r2 scoring 10 would give 7, still < 8; with r2 weighted 3, 8.5.
    assert score_out_of_reach([4.0], 2, Policy(), weights=[1.0, 3.0]) is None


def test_the_state_machine_decides_with_weights() -> None:
    state = make_state(WEIGHTED)
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r2", review(1, failed=["completeness"])))  # weight 0: no veto
    assert state.outcome is None
    state.apply(Reviewed("r1", review(9)))
    state.apply(Reviewed("r3", review(9)))
    result = outcome(state)
    assert (result.decision, result.mean) == ("accepted", 9.0)


def test_the_state_machine_rejects_early_with_weights() -> None:
    state = make_state(WEIGHTED)
    state.apply(Generated(GEN, ITEM))
    state.apply(Reviewed("r1", review(3)))
    # Best case: (3 * 1 + 10 * 0 + 10 * 0.5) / 1.5 = 5.33 < tau.
    result = outcome(state)
    assert (result.decision, result.stage) == ("rejected", "score")


# ---- loading from a config ------------------------------------------------------

FLEET = """
[protocol]
reviewer_weights = {weights}

[[agents]]
model = "qwen2.5-coder-0.5b"

[[agents]]
model = "qwen2.5-coder-1.5b"
"""


def _config(tmp_path: Path, weights: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.format(weights=weights))
    return path


def test_weights_load_from_a_calibration_file(tmp_path: Path) -> None:
    (tmp_path / "cal").mkdir()
    calibration = {"models": {}, "weights": {"qwen2.5-coder-1.5b": 0.3, "other": 0.0}}
    (tmp_path / "cal" / "calibration.json").write_text(json.dumps(calibration))
    config = load_config(_config(tmp_path, '"cal/calibration.json"'))
    assert config.protocol.reviewer_weights == calibration["weights"]
    assert config.protocol.weight_of("qwen2.5-coder-1.5b") == 0.3


def test_weights_load_from_an_inline_table(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, '{ "qwen2.5-coder-0.5b" = 0.0 }'))
    assert config.protocol.reviewer_weights == {"qwen2.5-coder-0.5b": 0.0}


def test_no_weights_by_default(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, '""'))
    assert config.protocol.reviewer_weights == {}
    encoded = msgspec.json.encode(config.protocol)
    assert msgspec.json.decode(encoded, type=Policy) == config.protocol


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('{"models": {}}', 'no valid "weights"'),
        ('{"weights": {"qwen2.5-coder-0.5b": -1}}', 'no valid "weights"'),
        ('{"weights": {"someone-else": 1.0}}', "no weight is for a model of this fleet"),
    ],
)
def test_bad_weight_files_name_the_key_and_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "calibration.json").write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(_config(tmp_path, '"calibration.json"'))
    assert "protocol.reviewer_weights" in str(caught.value)
