"""llama.cpp JSON sampling: gra's windowed grammar vs llama-cpp-python's full mask.

For each model, the same role calls (reviewer and generator prompts, gra's
sampling settings, fixed seeds) go to a plain ``llama_cpp.Llama`` (what a
llama-cpp-python user, distilabel's ``LlamaCppLLM`` included, gets: the
grammar masks the whole vocabulary at every token) and to gra's
``LlamaCppBackend`` (``gra.backends.grammar_sampling``), loaded side by side,
calls interleaved. Both use the same prompt-prefix reuse (gra's prompt cache
is off here), so the difference is the sampling. Compared: seconds per
completion token, and whether the texts are identical (they must be: same
seed, same candidates, same draws).

    python benchmarks/bench_grammar.py
    python benchmarks/bench_grammar.py --models gemma-3-270m --calls 4

Writes benchmarks/results/grammar-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

# Run as a file, this folder is on sys.path and the checkout's root is not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import Check, format_table, machine_info, utc_stamp, write_result
from gra.agents.roles import get_role
from gra.backends.base import Sampling
from gra.backends.llamacpp import LlamaCppBackend
from gra.models import resolve
from gra.protocols.roles import Example, GenerateRequest, ReviewRequest

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("qwen2.5-coder-0.5b", "gemma-3-270m", "qwen2.5-coder-1.5b")
REQUESTS = {
    "reviewer": ReviewRequest(
        "python",
        "Write a function that returns the second largest number in a list.",
        "Sort the unique values and take the one before last: "
        "`sorted(set(xs))[-2]`; it raises IndexError when there are fewer than two.",
    ),
    "generator": GenerateRequest(
        "python",
        (
            Example("Sum a list of numbers.", "Use `sum(numbers)`."),
            Example("Reverse a string.", "Slice it backwards: `text[::-1]`."),
        ),
    ),
}


def log(message: str) -> None:
    print(f"[bench_grammar] {message}", file=sys.stderr, flush=True)


async def measure_model(model: str, calls: int, max_tokens: int) -> dict[str, Any]:
    from llama_cpp import Llama

    path = resolve(model)
    plain = Llama(model_path=str(path), n_ctx=4096, n_threads=1, n_batch=256, verbose=False)
    backend = LlamaCppBackend(model, path, n_ctx=4096, n_threads=1, prompt_cache_mib=0)
    await backend.start()
    rows: list[dict[str, Any]] = []
    try:
        for n in range(calls):
            role_name = ("reviewer", "generator")[n % 2]
            role = get_role(role_name)
            messages = role.prompt(REQUESTS[role_name])  # type: ignore[arg-type]
            default = role.sampling
            sampling = Sampling(
                max_tokens=min(default.max_tokens, max_tokens),
                temperature=default.temperature,
                top_p=default.top_p,
                seed=1000 + n,
            )
            started = time.perf_counter()
            expected = plain.create_chat_completion(
                messages=messages,
                response_format={"type": "json_object", "schema": role.schema},
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
            )
            plain_s = time.perf_counter() - started
            started = time.perf_counter()
            completion = await backend.complete(messages, role.schema, sampling)
            gra_s = time.perf_counter() - started
            call = backend.last_call
            row = {
                "role": role_name,
                "seed": sampling.seed,
                "plain_s": plain_s,
                "plain_tokens": int(expected["usage"]["completion_tokens"]),
                "gra_s": gra_s,
                "gra_tokens": completion.completion_tokens,
                "window_misses": None if call is None else call.grammar_window_misses,
                "identical": completion.text == expected["choices"][0]["message"]["content"],
            }
            rows.append(row)
            log(
                f"{model} {role_name}: {row['gra_tokens']} tokens, gra {gra_s:.2f} s, "
                f"plain {plain_s:.2f} s, identical {row['identical']}"
            )
    finally:
        plain.close()
        await backend.aclose()
    return {"model": model, "calls": rows}


def checks_for(result: dict[str, Any]) -> list[Check]:
    rows = result["calls"]
    plain_s, gra_s = sum(r["plain_s"] for r in rows), sum(r["gra_s"] for r in rows)
    plain_tokens, gra_tokens = (
        sum(r["plain_tokens"] for r in rows),
        sum(r["gra_tokens"] for r in rows),
    )
    plain_ms, gra_ms = 1000 * plain_s / plain_tokens, 1000 * gra_s / gra_tokens
    identical = sum(r["identical"] for r in rows)
    misses = sum(r["window_misses"] or 0 for r in rows)
    model = result["model"]
    return [
        Check(
            f"{model}: ms per completion token (ratio: plain/gra)",
            f"{gra_ms:.1f}",
            f"{plain_ms:.1f}",
            plain_ms / gra_ms,
            "> 1",
            plain_ms > gra_ms,
        ),
        Check(
            f"{model}: identical texts",
            f"{identical}/{len(rows)}",
            "-",
            None,
            "all",
            identical == len(rows),
        ),
        Check(
            f"{model}: tokens the window alone did not decide",
            f"{misses}/{gra_tokens}",
            "-",
            None,
            "-",
            None,
        ),
    ]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--calls", type=int, default=6, help="calls per model (alternating roles)")
    parser.add_argument("--max-tokens", type=int, default=224, help="cap per call")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    stamp = utc_stamp()
    before = machine_info()
    results = [await measure_model(m, args.calls, args.max_tokens) for m in args.models]
    checks = [check for result in results for check in checks_for(result)]
    table = format_table(checks, "gra", "plain")
    print(table)
    path = write_result(
        args.results_dir,
        "grammar",
        {
            "benchmark": "grammar",
            "utc": stamp,
            "machine": before,
            "load_average_after": machine_info()["load_average"],
            "settings": vars(args),
            "results": results,
            "checks": [asdict(c) | {"verdict": c.verdict} for c in checks],
            "table": table,
            "passed": all(c.passed is not False for c in checks),
        },
    )
    print(f"wrote {path}")
    return 0 if all(c.passed is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
