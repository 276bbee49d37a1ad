"""`gra calibrate`: how well does this fleet judge, measured on labelled pairs.

Two real review runs over the same pairs, each a full fleet over the bus:

1. ``committee``: verification off, every review completed
   (``reject_when_decided = false`` changes no decision, only keeps the
   reviews an early rejection would cancel). Each reviewer judges alone in it
   (reviewers never see each other), so the same run gives every model's own
   accuracy under the paper's rule for one reviewer (all checks pass and its
   score >= tau), and the committee's accuracy under the whole rule.
2. ``verified``: verification on, with ``on_pass = "accept"`` so that every
   decision waits for the verifier and every verifiable item's verdict is
   recorded.

The committee-with-verifier figures under either ``on_pass`` setting follow
from the two runs, since the protocol's decision is a function of the
committee's verdict and the verification's: a failed verification rejects; a
pass accepts (``accept``) or defers to the committee (``committee``); "cannot
verify" defers. The live verdicts of run 2 are reported as well.

Labels are read only here, after the runs, to score verdicts: no agent ever
sees them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from gra.config import AgentConfig, Config, ConfigError
from gra.protocols.peer_review import Policy, Verdict, VerifyPolicy, decide
from gra.protocols.roles import Checks, ReviewOutput, Scores, VerifyRequest
from gra.report.agreement import reviewer_agreement
from gra.report.calibration import judge_metrics, metrics_table, reliability_weights
from gra.rundir import SUMMARY, VERDICTS, read_raw
from gra.verify import VerifySettings, verify

CALIBRATION = "calibration.json"
_SANDBOX = AgentConfig(model="sandbox", backend="sandbox", roles=("verifier",))


@dataclass(frozen=True)
class CalibrationOptions:
    config_path: Path
    input: Path
    out_dir: Path
    show_progress: bool = True
    with_verifier: bool = True
    # Skip the committee run: only the verifier's figures (about half the model time).
    with_committee: bool = True
    # Keep a run already finished in out_dir (its summary.json written) instead of
    # running it again: after a change that only affects the other run.
    reuse: bool = False


def read_labels(path: Path) -> dict[str, str]:
    """``id`` -> "good" | "bad" from a labelled JSONL file; a bad line is an error naming it."""
    labels: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read labelled pairs: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not JSON: {exc}") from exc
        label = row.get("label") if isinstance(row, dict) else None
        if label not in ("good", "bad") or not isinstance(row.get("id"), str):
            raise ConfigError(f"{path}:{number}: needs a string 'id' and 'label' good or bad")
        labels[row["id"]] = label
    if not labels:
        raise ConfigError(f"{path}: no labelled pairs")
    return labels


def committee_config(config: Config) -> Config:
    """The configured committee, verification off, every review completed."""
    protocol = msgspec.structs.replace(config.protocol, reject_when_decided=False)
    verify = msgspec.structs.replace(config.verify, enabled=False)
    return msgspec.structs.replace(config, protocol=protocol, verify=verify)


def verified_config(config: Config) -> Config:
    """The configured committee with verification on (a sandbox verifier added if
    the config has none), every decision waiting for the verifier."""
    verify = msgspec.structs.replace(config.verify, enabled=True, on_pass="accept")
    agents = config.agents
    if not any("verifier" in a.roles for a in agents):
        agents = (*agents, _SANDBOX)
    protocol = msgspec.structs.replace(config.protocol, reject_when_decided=False)
    return msgspec.structs.replace(config, agents=agents, verify=verify, protocol=protocol)


def _verdicts(out_dir: Path) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in read_raw([out_dir / VERDICTS])}


def alone_predictions(
    verdicts: Mapping[str, Mapping[str, Any]], tau: float
) -> dict[str, dict[str, bool]]:
    """Each reviewer's own verdict per item under the paper's rule for one reviewer."""
    per_model: dict[str, dict[str, bool]] = {}
    for item_id, verdict in verdicts.items():
        for review in verdict.get("reviews", []):
            passed = all(review["checks"].values()) and review["score"] >= tau
            per_model.setdefault(review["model"], {})[item_id] = passed
    return per_model


def committee_predictions(verdicts: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """What the run decided, per item."""
    return {i: v["decision"] == "accepted" for i, v in verdicts.items()}


def _review_output(review: Mapping[str, Any]) -> ReviewOutput:
    return ReviewOutput(Checks(**review["checks"]), Scores(**review["scores"]), "", "")


def subcommittee_predictions(
    verdicts: Mapping[str, Mapping[str, Any]], models: Collection[str], policy: Policy
) -> dict[str, bool]:
    """The paper's decision had only ``models`` reviewed, from the same completed reviews
    (every review is kept in the committee run). An item that would need adjudication
    counts as rejected: the run has no adjudication by a model left out to draw on.
    Items none of ``models`` reviewed (failed ones) are left out."""
    out: dict[str, bool] = {}
    for item_id, verdict in verdicts.items():
        reviews = [_review_output(r) for r in verdict.get("reviews", []) if r["model"] in models]
        if reviews:
            out[item_id] = decide(reviews, policy).verdict is Verdict.ACCEPT
    return out


def combined_predictions(
    committee: Mapping[str, bool],
    verified: Mapping[str, Mapping[str, Any]],
    on_pass: str,
    unverified: str = "committee",
) -> dict[str, bool]:
    """The protocol's decision from the committee's (id -> accepted) and the
    verification's verdict (none: the item was not recognised as verifiable)."""
    out: dict[str, bool] = {}
    for item_id, accepted in committee.items():
        verification = (verified.get(item_id) or {}).get("verification") or {}
        match verification.get("verdict"):
            case "failed":
                accepted = False
            case "passed" if on_pass == "accept":
                accepted = True
            case "passed":
                pass
            case _ if unverified == "reject":
                accepted = False
        out[item_id] = accepted
    return out


def verification_breakdown(
    verified: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]
) -> dict[str, dict[str, int]]:
    """How often each verification verdict met a good or a bad pair."""
    table: dict[str, dict[str, int]] = {}
    for item_id, verdict in verified.items():
        verification = verdict.get("verification") or {}
        key = verification.get("verdict", "not_verifiable")
        row = table.setdefault(key, {"good": 0, "bad": 0})
        if item_id in labels:
            row[labels[item_id]] += 1
    return table


def calibrate(config: Config, options: CalibrationOptions) -> dict[str, Any]:
    """Run the committee (and the verifier) over the labelled pairs, then score them."""
    from gra.supervisor.job import JobOptions, run_sync

    labels = read_labels(options.input)

    def review(name: str, run_config: Config) -> dict[str, dict[str, Any]]:
        out = options.out_dir / name
        if options.reuse and (out / SUMMARY).exists():
            return _verdicts(out)
        job = JobOptions(
            options.config_path,
            out,
            show_progress=options.show_progress,
            mode="review",
            input=options.input,
        )
        run_sync(run_config, job)
        return _verdicts(out)

    if not (options.with_committee or options.with_verifier):
        raise ConfigError("calibrate: nothing to run (neither the committee nor the verifier)")
    committee = review("committee", committee_config(config)) if options.with_committee else None
    verified = review("verified", verified_config(config)) if options.with_verifier else None
    result = score_runs(config.protocol, labels, committee, verified)
    result["input"] = str(options.input)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    (options.out_dir / CALIBRATION).write_text(json.dumps(result, indent=2) + "\n")
    result["table"] = metrics_table(result["configurations"])
    return result


def rescore(config: Config, labelled: Path, out_dir: Path) -> dict[str, Any]:
    """Score the runs a calibration directory already holds (no model runs again)."""

    def recorded(name: str) -> dict[str, dict[str, Any]] | None:
        path = out_dir / name / VERDICTS
        return _verdicts(out_dir / name) if path.exists() else None

    result = score_runs(
        config.protocol, read_labels(labelled), recorded("committee"), recorded("verified")
    )
    result["input"] = str(labelled)
    (out_dir / CALIBRATION).write_text(json.dumps(result, indent=2) + "\n")
    result["table"] = metrics_table(result["configurations"])
    return result


REVERIFIED = "reverified"


async def _reverify_one(verdict: dict[str, Any], policy: VerifyPolicy) -> dict[str, Any]:
    recorded = verdict.get("verification")
    if not recorded:
        return verdict
    response = verdict.get("original_response") or verdict["response"]
    request = VerifyRequest(
        recorded["kind"],
        verdict["instruction"],
        response,
        test_sets=tuple(tuple(tests) for tests in recorded.get("test_sets", ())),
        programs=tuple(recorded.get("programs", ())),
        wall_s=policy.timeout_s,
        test_timeout_s=policy.test_timeout_s,
        test_agreement=policy.test_agreement,
        min_solver_agreement=policy.min_solver_agreement,
    )
    output = await verify(request, VerifySettings.for_request(request))
    again = {**recorded, **msgspec.structs.asdict(output)}
    return {**verdict, "verification": again}


async def _reverify_all(
    verdicts: Mapping[str, dict[str, Any]], policy: VerifyPolicy, concurrency: int
) -> dict[str, dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(verdict: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await _reverify_one(verdict, policy)

    done = await asyncio.gather(*(one(v) for v in verdicts.values()))
    return dict(zip(verdicts, done, strict=True))


def reverify(
    config: Config, labelled: Path, out_dir: Path, *, concurrency: int = 2
) -> dict[str, Any]:
    """Judge the evidence the verified run recorded (the testers' asserts and
    solutions, the solvers' programs) again with this code and the config's
    [verify] thresholds, in the sandbox, and score it: a change to the verifier's
    rules measured on the very same fleet output, without model time. Writes
    ``out_dir/reverified/`` (verdicts.jsonl, calibration.json)."""
    verified = _verdicts(out_dir / "verified")
    again = asyncio.run(_reverify_all(verified, config.verify, concurrency))
    target = out_dir / REVERIFIED
    target.mkdir(parents=True, exist_ok=True)
    (target / VERDICTS).write_text("".join(json.dumps(v) + "\n" for v in again.values()))
    committee_dir = out_dir / "committee"
    committee = _verdicts(committee_dir) if (committee_dir / VERDICTS).exists() else None
    result = score_runs(config.protocol, read_labels(labelled), committee, again)
    result["input"] = str(labelled)
    result["reverified"] = True
    (target / CALIBRATION).write_text(json.dumps(result, indent=2) + "\n")
    result["table"] = metrics_table(result["configurations"])
    return result


def score_runs(
    policy: Policy,
    labels: Mapping[str, str],
    committee: Mapping[str, Mapping[str, Any]] | None,
    verified: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """Per model and per configuration metrics from the recorded verdicts (either run
    may be missing: its rows are left out)."""
    tau = policy.tau
    rows: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    others: dict[str, dict[str, bool]] = {}
    result: dict[str, Any] = {"tau": tau}
    paper: dict[str, bool] | None = None
    if committee is not None:
        for model, predictions in sorted(alone_predictions(committee, tau).items()):
            models[model] = judge_metrics(predictions, labels)
            rows[f"{model} alone"] = models[model]
        paper = committee_predictions(committee)
        rows["committee (paper)"] = judge_metrics(paper, labels)
        if len(models) >= 3:  # would the committee do better without one of its models?
            for model in models:
                kept = [m for m in models if m != model]
                others[model] = subcommittee_predictions(committee, kept, policy)
                rows[f"committee without {model}"] = judge_metrics(others[model], labels)
        result["models"] = models
        result["weights"] = reliability_weights(models)
        result["agreement"] = reviewer_agreement(committee.values(), tau=tau)
    if verified is not None:
        if paper is not None:
            for on_pass in ("committee", "accept"):
                predictions = combined_predictions(paper, verified, on_pass)
                name = f"committee + verifier (on_pass={on_pass})"
                rows[name] = judge_metrics(predictions, labels)
        # The verifier alone overrides every committee verdict: any placeholder does.
        placeholder = paper if paper is not None else dict.fromkeys(verified, False)
        verified_only = combined_predictions(placeholder, verified, "accept", unverified="reject")
        rows["verifier alone (on_pass=accept, unverified=reject)"] = judge_metrics(
            verified_only, labels
        )
        for model, predictions in others.items():
            for on_pass in ("committee", "accept"):
                combined = combined_predictions(predictions, verified, on_pass)
                name = f"committee without {model} + verifier (on_pass={on_pass})"
                rows[name] = judge_metrics(combined, labels)
        rows["committee + verifier (live run, on_pass=accept)"] = judge_metrics(
            committee_predictions(verified), labels
        )
        result["verification"] = verification_breakdown(verified, labels)
    result["configurations"] = rows
    return result
