"""The `gra` command: run | review | calibrate | export | agent | models | status | keys | bench."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import msgspec

from gra.config import BACKENDS, AgentSettings, agent_settings, load_config
from gra.errors import (
    ConfigError,
    GraError,
    OutputDirError,
    OutputError,
    TargetAlreadyMet,
    UserError,
)
from gra.logs import configure
from gra.models import CATALOG, assemble, models_dir
from gra.protocols.messages import AGENT_SETTINGS_ENV
from gra.protocols.roles import ReviewStyle
from gra.rundir import SUPERVISOR_LOG, VERDICTS, Summary, log_dir


def _cmd_run(args: argparse.Namespace) -> int:
    from gra.supervisor.job import JobOptions, default_out_dir

    config = load_config(args.config)
    out_dir = Path(args.out) if args.out else default_out_dir(config, Path(args.config))
    options = JobOptions(
        Path(args.config),
        out_dir,
        args.resume,
        args.target,
        not args.no_progress,
        args.skip_bad_rows,
    )
    _stop_on_sigterm()
    try:
        summary = _run(options, config, args.log_level)
    except TargetAlreadyMet as exc:
        print(f"{out_dir}: {exc}")
        return 0
    rejected = sum(n for k, n in summary.counts.items() if k.startswith("rejected_"))
    print(
        f"{out_dir}: accepted {summary.count('accepted')}, rejected {rejected}, "
        f"failed {summary.count('failed')} in {summary.wall_seconds:.0f}s"
    )
    if summary.instances_unfinished:
        print(
            f"{summary.instances_unfinished} instances were still in progress; "
            "`--resume --target N` carries them on"
        )
    return 0


def _cmd_review(args: argparse.Namespace) -> int:
    from gra.supervisor.job import JobOptions

    config = load_config(args.config)
    out_dir = Path(args.out)
    mode = "refine" if args.refine else "review"
    options = JobOptions(
        Path(args.config),
        out_dir,
        args.resume,
        None,
        not args.no_progress,
        args.skip_bad_rows,
        mode,
        Path(args.input),
    )
    _stop_on_sigterm()
    summary = _run(options, config, args.log_level)
    print(
        f"{out_dir / VERDICTS}: {summary.instances_finished} items judged, "
        f"accepted {summary.count('accepted')}, adjudicated {summary.count('adjudicated')}, "
        f"failed {summary.count('failed')} in {summary.wall_seconds:.0f}s"
    )
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from gra.calibrate import CALIBRATION, REVERIFIED, CalibrationOptions, calibrate, reverify

    config = load_config(args.config)
    if args.reviewer_prompt is not None:
        protocol = msgspec.structs.replace(config.protocol, reviewer_prompt=args.reviewer_prompt)
        config = msgspec.structs.replace(config, protocol=protocol)
    out_dir = Path(args.out)
    if args.reverify:
        if not (out_dir / "verified" / VERDICTS).is_file():
            raise OutputDirError(
                f"{out_dir}: no verified run to judge again (verified/verdicts.jsonl)"
            )
        result = reverify(config, Path(args.input), out_dir)
        print(result["table"])
        print(f"{out_dir / REVERIFIED / CALIBRATION}: the recorded evidence judged again")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    configure(json_path=out_dir / "calibrate.jsonl", level=args.log_level, role="supervisor")
    options = CalibrationOptions(
        Path(args.config),
        Path(args.input),
        out_dir,
        show_progress=not args.no_progress,
        with_verifier=not args.no_verifier,
        with_committee=not args.no_committee,
        reuse=args.reuse,
    )
    result = calibrate(config, options)
    print(result["table"])
    print(f"{out_dir / CALIBRATION}: per model and per configuration")
    return 0


def _run(options: Any, config: Any, log_level: str) -> Summary:
    """Run a job holding its output directory's lock: nothing is written there before
    the lock is held, so a second run on the same directory is refused untouched."""
    from gra.supervisor.job import run_sync
    from gra.supervisor.outdir_lock import lock_out_dir, usable_out_dir

    with lock_out_dir(options.out_dir):
        usable_out_dir(log_dir(options.out_dir))
        log_file = log_dir(options.out_dir) / SUPERVISOR_LOG
        configure(json_path=log_file, level=log_level, role="supervisor")
        return run_sync(config, options)


def _positive_int(text: str) -> int:
    """An argparse type: refuses 0 and negatives with one clear line."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def _stop_on_sigterm() -> None:
    """`kill PID` (SIGTERM) stops a run as Ctrl-C does: agents shut down, outputs and
    journal closed, summary written, exit 130; the run continues with --resume."""

    def interrupt(signum: int, frame: Any) -> None:
        # Whatever handles Ctrl-C now (asyncio's, while the run's loop runs) handles this.
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    signal.signal(signal.SIGTERM, interrupt)


# `gra agent`'s flags, each named for the AgentSettings field it sets (entry.*: the
# AgentConfig ones); a flag left out keeps the Struct's default, stated there only.
_AGENT_FLAGS = (
    "connect",
    "agent_id",
    "output_retries",
    "model_path",
    "parent_pid",
    "log_file",
    "curve_secret",
    "server_key",
)
_ENTRY_FLAGS = (
    "roles",
    "backend",
    "model",
    "url",
    "served_model",
    "api_key_env",
    "capacity",
    "n_ctx",
    "n_threads",
    "prompt_cache_mib",
    "factory",
)


def _cmd_agent(args: argparse.Namespace) -> int:
    from gra.agents.main import run_agent

    return run_agent(agent_settings_of(args))


def agent_settings_of(args: argparse.Namespace) -> AgentSettings:
    """The one shape of an agent's settings: from the supervisor (``--settings-env``,
    how it starts its agents) or from the flags of an agent started by hand."""
    given = {dest: getattr(args, dest) for dest in (*_AGENT_FLAGS, *_ENTRY_FLAGS)}
    given = {dest: value for dest, value in given.items() if value is not None}
    if args.settings_env:
        if given:
            raise ConfigError(
                f"gra agent --settings-env: {_flag(next(iter(given)))} is given; the "
                f"settings come from ${AGENT_SETTINGS_ENV} only"
            )
        raw = os.environ.pop(AGENT_SETTINGS_ENV, None)  # nothing the agent starts inherits it
        if raw is None:
            raise ConfigError(f"gra agent --settings-env: ${AGENT_SETTINGS_ENV} is not set")
        where = f"gra agent: ${AGENT_SETTINGS_ENV}"
        return agent_settings(raw.encode(), lambda field: f"{where} {field}".rstrip())
    missing = [_flag(dest) for dest in ("connect", "model") if dest not in given]
    if missing:
        raise ConfigError(f"gra agent: {' and '.join(missing)} required")
    source: dict[str, Any] = {dest: given[dest] for dest in _AGENT_FLAGS if dest in given}
    source.setdefault("agent_id", f"{args.model}-{os.getpid()}")
    source["entry"] = {dest: given[dest] for dest in _ENTRY_FLAGS if dest in given}

    def flag_and_value(field: str) -> str:
        dest = field.rpartition(".")[2].partition("[")[0]
        if not dest:
            return "gra agent"
        value = given.get(dest)
        shown = ",".join(value) if isinstance(value, tuple) else value
        return f"gra agent {_flag(dest)}" + ("" if value is None else f" {shown}")

    return agent_settings(source, flag_and_value)


def _flag(dest: str) -> str:
    return "--role" if dest == "roles" else "--" + dest.replace("_", "-")


def _role_list(text: str) -> tuple[str, ...]:
    return tuple(role.strip() for role in text.split(",") if role.strip())


def _cmd_models(args: argparse.Namespace) -> int:
    rows = []
    for name, model in CATALOG.items():
        row = {"name": name, "description": model.description, "sha256": model.sha256}
        if args.assemble:
            row["path"] = str(assemble(name))
            row["verified"] = True
        else:
            path = models_dir() / model.filename
            row["path"] = str(path) if path.exists() else None
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            state = (
                "verified"
                if row.get("verified")
                else ("present" if row["path"] else "not assembled")
            )
            print(f"{row['name']:<22} {state:<14} {row['description']}")
            if row["path"]:
                print(f"{'':<22} {row['path']}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from gra.bus.security import create_keys

    directory = Path(args.dir)
    for path in create_keys(directory, args.agent or []):
        print(path)
    print(
        f'keys in {directory}: set [bus] curve_keys = "{directory}"; give each remote agent '
        f"its agents/NAME.key_secret and supervisor.key (--curve-secret, --server-key)"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from gra.data.export import export

    result = export(Path(args.dir), Path(args.out), args.format, args.style, overwrite=args.force)
    print(f"{result.out}: {result.count} items ({args.format}, {args.style})")
    if result.card is not None:
        print(f"{result.card}: dataset card (set its license before publishing)")
    return 0


def _cmd_humaneval(args: argparse.Namespace) -> int:
    from gra.data.humaneval import write_humaneval_seeds

    count = write_humaneval_seeds(Path(args.out))
    print(f"{args.out}: {count} HumanEval problems as coding seeds")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run the checkout's quick benchmarks (benchmarks/quick.py) in a child Python.

    The benchmarks and their test doubles live in the source checkout, not in
    the package, so an installed wheel has none to run: that is one line, exit 2.
    """
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "quick.py"
    if not script.is_file():
        raise UserError(
            "gra bench runs the benchmarks of gra's source checkout (benchmarks/quick.py), "
            "which an installed package does not include; run it from a checkout"
        )
    results = ["--results", str(Path(args.results).resolve())] if args.results else []
    return subprocess.run([sys.executable, str(script), *results], check=False).returncode


def _cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gra.status import StatusError, read_status, render_status, watch_status

    # Checked here rather than by argparse, so a bad value costs one line, not a usage.
    try:
        interval = float(args.interval)
    except ValueError:
        interval = math.nan
    if not (math.isfinite(interval) and interval > 0):
        raise StatusError(f"--interval must be a number of seconds above 0, not {args.interval}")
    if not args.watch:
        render_status(read_status(Path(args.dir)), Console())
        return 0
    try:
        watch_status(Path(args.dir), Console(), interval)
    except KeyboardInterrupt:
        return 130  # the watcher stops; the run it watched goes on
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from gra.report.html import write_report

    directory = Path(args.dir)
    if not directory.is_dir():
        raise OutputError(f"{directory}: not a directory")
    print(write_report(directory))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gra", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a synthesis job from a TOML config")
    run.add_argument("config")
    run.add_argument("--out", help="output directory (default: run.out or runs/CONFIG-NAME)")
    run.add_argument(
        "--target", type=_positive_int, help="accepted items wanted (overrides run.target)"
    )
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--log-level", default="warning", help="console log level (file gets all)")
    run.add_argument("--skip-bad-rows", action="store_true", help="leave malformed seed rows out")
    run.set_defaults(handler=_cmd_run)

    review = sub.add_parser(
        "review", help="judge existing instruction/response pairs with the committee"
    )
    review.add_argument("config")
    review.add_argument("--input", required=True, help="JSONL pairs to judge")
    review.add_argument("--out", required=True, help="output directory")
    review.add_argument(
        "--refine", action="store_true", help="rewrite each response first (GRA-Refine)"
    )
    review.add_argument("--resume", action="store_true")
    review.add_argument("--skip-bad-rows", action="store_true")
    review.add_argument("--no-progress", action="store_true")
    review.add_argument("--log-level", default="warning")
    review.set_defaults(handler=_cmd_review)

    calibrate = sub.add_parser(
        "calibrate", help="measure each model and the committee on labelled pairs"
    )
    calibrate.add_argument("config")
    calibrate.add_argument(
        "--input", required=True, help="JSONL pairs with id, instruction, response, label"
    )
    calibrate.add_argument("--out", required=True, help="output directory")
    calibrate.add_argument("--no-verifier", action="store_true", help="the committee only")
    calibrate.add_argument(
        "--reviewer-prompt",
        choices=get_args(ReviewStyle),
        help="ask the reviewers in this style instead of the config's [protocol] reviewer_prompt",
    )
    calibrate.add_argument(
        "--no-committee", action="store_true", help="the verifier's run only (half the time)"
    )
    calibrate.add_argument(
        "--reuse", action="store_true", help="keep runs already finished in --out"
    )
    calibrate.add_argument(
        "--reverify",
        action="store_true",
        help="judge the verified run's recorded tests and programs again (no model runs)",
    )
    calibrate.add_argument("--no-progress", action="store_true")
    calibrate.add_argument("--log-level", default="warning")
    calibrate.set_defaults(handler=_cmd_calibrate)

    agent = sub.add_parser(
        "agent",
        help="one agent process joining a supervisor",
        description="A flag left out keeps the default of the same key in an [[agents]] entry.",
    )
    agent.add_argument("--connect", help="supervisor endpoint, e.g. tcp://host:5555 (required)")
    agent.add_argument(
        "--role", dest="roles", type=_role_list, help="ROLE[,ROLE] (default: every role)"
    )
    agent.add_argument("--backend", choices=BACKENDS, help="(default: llamacpp)")
    agent.add_argument("--model", help="model name: its identity in the fleet (required)")
    agent.add_argument("--model-path", help="GGUF file (llamacpp; default: the catalog model)")
    agent.add_argument("--url", help="server base url (vllm/openai)")
    agent.add_argument("--served-model", help="model name on the server (default: --model)")
    agent.add_argument("--api-key-env", help="environment variable holding the API key")
    agent.add_argument("--capacity", type=int, help="tasks in flight (default: the backend's)")
    agent.add_argument("--n-ctx", type=int)
    agent.add_argument("--n-threads", type=int)
    agent.add_argument(
        "--prompt-cache-mib", type=int, help="llama.cpp: RAM for saved prompt states (0: off)"
    )
    agent.add_argument("--factory", help="module:callable building the backend (plugin)")
    agent.add_argument("--output-retries", type=int)
    agent.add_argument("--agent-id")
    agent.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    agent.add_argument("--log-file", help="JSON-lines log file")
    agent.add_argument("--curve-secret", help="this agent's secret key file (from gra keys)")
    agent.add_argument("--server-key", help="the supervisor's public key file (from gra keys)")
    # How the supervisor starts its agents: every setting in $GRA_AGENT_SETTINGS.
    agent.add_argument("--settings-env", action="store_true", help=argparse.SUPPRESS)
    agent.set_defaults(handler=_cmd_agent)

    models = sub.add_parser("models", help="list, assemble and verify the default models")
    models.add_argument("--assemble", action="store_true", help="assemble and verify every model")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=_cmd_models)

    exporter = sub.add_parser("export", help="a run's accepted items as a training dataset")
    exporter.add_argument("dir", help="the run's output directory")
    exporter.add_argument("--out", required=True, help="file (jsonl, parquet) or directory (hf)")
    exporter.add_argument("--format", choices=["jsonl", "parquet", "hf"], default="jsonl")
    exporter.add_argument("--style", choices=["chat", "alpaca"], default="chat")
    exporter.add_argument("--force", action="store_true", help="overwrite --out")
    exporter.set_defaults(handler=_cmd_export)

    humaneval = sub.add_parser(
        "humaneval-seeds", help="write HumanEval's 164 problems as a coding seed file"
    )
    humaneval.add_argument("out", help="JSONL file to write")
    humaneval.set_defaults(handler=_cmd_humaneval)

    bench = sub.add_parser("bench", help="quick bus and scheduler benchmarks on this machine")
    bench.add_argument("--results", help="directory for a JSON result per benchmark")
    bench.set_defaults(handler=_cmd_bench)

    keys = sub.add_parser("keys", help="CURVE keys for an authenticated tcp bus")
    keys.add_argument("dir", help="keys directory (created private)")
    keys.add_argument("--agent", action="append", help="make a key for this agent (repeatable)")
    keys.set_defaults(handler=_cmd_keys)

    status = sub.add_parser("status", help="the health of a run's fleet (live or finished)")
    status.add_argument("dir", help="the run's output directory")
    status.add_argument(
        "--watch", action="store_true", help="redraw until the run ends (Ctrl-C to stop)"
    )
    status.add_argument(
        "--interval",
        default="2",
        metavar="SECONDS",
        help="seconds between redraws with --watch (default 2)",
    )
    status.set_defaults(handler=_cmd_status)

    report = sub.add_parser("report", help="write DIR/report.html: plots of a run (offline)")
    report.add_argument("dir", help="the run's output directory")
    report.set_defaults(handler=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A shell starts background jobs with SIGINT ignored, and Python keeps it so;
    # `kill -INT` must still stop a run cleanly (and resumably) wherever it started.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.handler(args))
    except GraError as exc:
        # One line, never a traceback: exit 2 for what the user can fix and for a
        # run that cannot go on (gra.errors draws the tree), 1 for anything else.
        print(f"gra: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gra: interrupted; continue with --resume", file=sys.stderr)
        return 130
