"""JSON schemas for constraining model output.

msgspec derives the schema from the output Struct; grammar engines want it
self-contained (no ``$ref``) and without long string-length bounds (each unit
of a bound becomes grammar rules), so we inline references and keep only
short bounds (which keep feedback brief); ``max_tokens`` limits the rest,
and msgspec still enforces every bound when it decodes the output.
"""

from __future__ import annotations

from typing import Any

import msgspec

GRAMMAR_MAX_LENGTH = 400


def model_schema(output_type: type) -> dict[str, Any]:
    raw = msgspec.json.schema(output_type)
    defs = raw.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            out = {k: resolve(v) for k, v in node.items() if k not in ("title", "description")}
            if out.get("type") == "object":
                out.setdefault("additionalProperties", False)
            if out.get("type") == "string":
                out.pop("minLength", None)
                if out.get("maxLength", 0) > GRAMMAR_MAX_LENGTH:
                    out.pop("maxLength")
            return out
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(raw)
