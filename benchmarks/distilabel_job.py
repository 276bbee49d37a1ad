"""gra's generate-then-review job as a distilabel pipeline, for a side-by-side timing.

Runs with the Python of ``.cache/distilabel-venv`` (``scripts/setup_distilabel.sh``),
never with gra's: it must not import gra, so that each side only pays for its
own framework. ``benchmarks/bench_distilabel.py`` writes the job spec (a JSON
file) from gra's own rendered prompts and schemas, so that every model call
here gets the same messages, JSON schema, max_tokens and temperature as the
matching call in gra:

    LoadDataFromDicts >> MarkStart >> ChatGeneration(generator)
        >> BuildReviewMessages >> [ChatGeneration(judge) for each judge]
        >> CombineOutputs >> MarkEnd

Structured output uses llama.cpp's own JSON-schema grammar
(``response_format``), as gra's llama.cpp backend does; distilabel's
``structured_output`` would go through outlines instead, a different (and
here uninstalled) engine, which would make the comparison about grammars.

distilabel loads every step (and so every model) before the first batch
flows, so ``MarkStart`` stamps the moment processing begins and ``MarkEnd``
the moment each combined batch comes out: their span is the job without
model loading. The wall time of ``pipeline.run`` (loads, teardown, writing
the dataset) is reported beside it.

Usage: ``python benchmarks/distilabel_job.py SPEC.json`` (writes ``spec["out"]``).
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import distilabel
import llama_cpp
from distilabel.models.llms import LlamaCppLLM
from distilabel.pipeline import Pipeline
from distilabel.steps import CombineOutputs, LoadDataFromDicts, Step, StepInput
from distilabel.steps.tasks import ChatGeneration

if TYPE_CHECKING:
    from distilabel.typing import StepColumns, StepOutput


def _now() -> float:
    return time.time()  # wall clock: steps run in different processes


class MarkStart(Step):
    """Stamps each row when processing starts (after every model has loaded)."""

    @property
    def inputs(self) -> "StepColumns":
        return ["id"]

    @property
    def outputs(self) -> "StepColumns":
        return ["t_start"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        now = _now()
        for row in inputs:
            row["t_start"] = now
        yield inputs


class MarkEnd(Step):
    """Stamps each finished row and appends it to a JSONL file the driver reads.

    Writing the rows here, rather than reading the returned Distiset, keeps
    the result independent of how distilabel names and stores its datasets.
    """

    rows_path: str

    @property
    def inputs(self) -> "StepColumns":
        return ["id"]

    @property
    def outputs(self) -> "StepColumns":
        return ["t_end"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        now = _now()
        with open(self.rows_path, "a", encoding="utf-8") as out:
            for row in inputs:
                row["t_end"] = now
                out.write(json.dumps(row, default=str) + "\n")
        yield inputs


def parse_json(text: str | None) -> dict[str, Any] | None:
    """Grammar-sampled JSON may hold raw newlines in strings (gra accepts those too)."""
    if not text:
        return None
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class BuildReviewMessages(Step):
    """Parses the generator's JSON and fills gra's reviewer prompt with it.

    The prompt arrives pre-rendered by gra with placeholders, so the judges
    read byte-for-byte what gra's reviewers read. Unparseable generator
    output is still reviewed (as the response, instruction empty): gra would
    retry such a call instead, which the driver reports as a difference.
    """

    template: list[dict[str, str]]
    placeholders: dict[str, str]

    @property
    def inputs(self) -> "StepColumns":
        return ["domain", "generator_output"]

    @property
    def outputs(self) -> "StepColumns":
        return [
            "instruction",
            "response",
            "generator_valid",
            "generator_statistics",
            "review_messages",
        ]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        for row in inputs:
            parsed = parse_json(row["generator_output"])
            valid = bool(
                parsed
                and isinstance(parsed.get("instruction"), str)
                and isinstance(parsed.get("response"), str)
            )
            instruction = str(parsed["instruction"]) if valid and parsed else ""
            response = str(parsed["response"]) if valid and parsed else row["generator_output"]
            values = {
                "domain": row["domain"],
                "instruction": instruction,
                "response": response or "",
            }
            messages = []
            for message in self.template:
                content = message["content"]
                for key, marker in self.placeholders.items():
                    content = content.replace(marker, values[key])
                messages.append({"role": message["role"], "content": content})
            # Each judge replaces the row's distilabel_metadata with its own,
            # so the generator's token counts are kept in a column of their own.
            metadata = row.get("distilabel_metadata") or {}
            row.update(
                instruction=instruction,
                response=response,
                generator_valid=valid,
                generator_statistics=metadata.get("statistics_generate"),
                review_messages=messages,
            )
        yield inputs


def _llm(model: dict[str, Any], role: dict[str, Any], llama: dict[str, Any]) -> LlamaCppLLM:
    """The same llama.cpp settings and sampling as gra's llama.cpp backend."""
    return LlamaCppLLM(
        model_path=model["path"],
        n_ctx=llama["n_ctx"],
        n_batch=llama["n_batch"],
        n_gpu_layers=0,
        extra_kwargs={"n_threads": llama["n_threads"]},
        generation_kwargs={
            "max_new_tokens": role["max_tokens"],
            "temperature": role["temperature"],
            "top_p": role["top_p"],
            "extra_generation_kwargs": {
                "response_format": {"type": "json_object", "schema": role["schema"]}
            },
        },
    )


def build_pipeline(spec: dict[str, Any], rows_path: Path, cache_dir: Path) -> Pipeline:
    batch = int(spec["input_batch_size"])
    llama = spec["llama"]
    generator, review = spec["generator"], spec["review"]
    data = [
        {"id": item["id"], "domain": item["domain"], "generator_messages": item["messages"]}
        for item in spec["items"]
    ]
    with Pipeline(name="gra-bench-distilabel", cache_dir=cache_dir) as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=batch)
        start = MarkStart(input_batch_size=batch)
        generate = ChatGeneration(
            name="generate",
            llm=_llm(generator, generator, llama),
            input_batch_size=batch,
            input_mappings={"messages": "generator_messages"},
            output_mappings={"generation": "generator_output", "model_name": "generator_model"},
        )
        prepare = BuildReviewMessages(
            template=review["messages"],
            placeholders=review["placeholders"],
            input_batch_size=batch,
        )
        judges = [
            ChatGeneration(
                name=f"review_{i}",
                llm=_llm(judge, review, llama),
                input_batch_size=batch,
                input_mappings={"messages": "review_messages"},
                output_mappings={"generation": f"review_{i}", "model_name": f"review_{i}_model"},
            )
            for i, judge in enumerate(spec["judges"])
        ]
        combine = CombineOutputs(input_batch_size=batch)
        end = MarkEnd(rows_path=str(rows_path), input_batch_size=batch)
        load >> start >> generate >> prepare >> judges >> combine >> end
    return pipeline


def _tokens(row: dict[str, Any], step: str) -> tuple[int, int]:
    if step == "generate":
        stats = row.get("generator_statistics") or {}
    else:
        stats = (row.get("distilabel_metadata") or {}).get(f"statistics_{step}") or {}

    def total(value: Any) -> int:
        if isinstance(value, list):
            return sum(int(v) for v in value)
        return int(value or 0)

    return total(stats.get("input_tokens")), total(stats.get("output_tokens"))


def summarise(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-item outcomes and token counts, in the shape the driver prints."""
    judges = spec["judges"]
    items = []
    usage: dict[str, dict[str, int]] = {}

    def add(model: str, prompt: int, completion: int) -> None:
        slot = usage.setdefault(model, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        slot["calls"] += 1
        slot["prompt_tokens"] += prompt
        slot["completion_tokens"] += completion

    for row in sorted(rows, key=lambda r: r["id"]):
        add(spec["generator"]["name"], *_tokens(row, "generate"))
        reviews = []
        for i, judge in enumerate(judges):
            add(judge["name"], *_tokens(row, f"review_{i}"))
            text = row.get(f"review_{i}")
            reviews.append(
                {"model": judge["name"], "valid": parse_json(text) is not None, "text": text}
            )
        items.append(
            {
                "id": row["id"],
                "generator_valid": row.get("generator_valid"),
                "instruction": row.get("instruction"),
                "response": row.get("response"),
                "reviews": reviews,
            }
        )
    return {"items": items, "usage": usage}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(spec["out"])
    with tempfile.TemporaryDirectory(prefix="gra-distilabel-") as tmp:
        rows_path = Path(tmp) / "rows.jsonl"
        rows_path.touch()
        pipeline = build_pipeline(spec, rows_path, Path(tmp) / "cache")
        started = _now()
        pipeline.run(use_cache=False)
        finished = _now()
        rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line]
    starts = [r["t_start"] for r in rows]
    ends = [r["t_end"] for r in rows]
    result = {
        "items_expected": len(spec["items"]),
        "items_finished": len(rows),
        "run_wall_s": finished - started,
        "load_s": (min(starts) - started) if starts else None,
        "job_s": (max(ends) - min(starts)) if rows else None,
        "teardown_s": (finished - max(ends)) if rows else None,
        "input_batch_size": spec["input_batch_size"],
        "pid": os.getpid(),
        "versions": {"distilabel": distilabel.__version__, "llama_cpp": llama_cpp.__version__},
        **summarise(spec, rows),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if len(rows) == len(spec["items"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
