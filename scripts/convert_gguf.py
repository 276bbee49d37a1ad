"""Convert a GGUF model to a Hugging Face checkpoint that vLLM's CPU build can serve.

vLLM no longer loads GGUF on CPU, so we dequantise once with transformers
(which must be < 5: 5.x refuses to save a GGUF-loaded model) and store
bfloat16 safetensors plus the tokenizer, chat template included.

Usage: python convert_gguf.py GGUF_FILE OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def convert(gguf: Path, out: Path) -> None:
    """Load `gguf` with transformers and save it, tokenizer and weights, into `out`."""
    directory, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    if not tokenizer.chat_template:
        raise SystemExit(f"{gguf}: no chat template in the GGUF metadata; chat requests would fail")
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    gguf, out = Path(argv[0]).resolve(), Path(argv[1])
    if not gguf.is_file():
        raise SystemExit(f"GGUF file not found: {gguf}")
    convert(gguf, out)


if __name__ == "__main__":
    main(sys.argv[1:])
