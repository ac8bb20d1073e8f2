"""Content digests of what a result depends on, and the check that a fine-tuned checkpoint is whole.

The workflow puts these digests into the params of the rules that read the data, so Snakemake reruns
a job when the *content* changes, whatever the file times say (``cp -p``, ``rsync -a`` and ``tar x``
keep an older mtime; a model replaced at the same path keeps the path). A digest is a streaming
SHA-256 of each file, remembered per (path, size, mtime, ctime, inode) in memory and, when the workflow
names one, in a JSON cache file, so a dry run of an unchanged multi-GB model reads no weights. The
ctime is in the key because it is the one time stamp a copy cannot keep: ``cp -p`` sets the mtime
back, never the ctime.

A fine-tuning job writes ``checksums.json`` next to the checkpoint it wrote; a job that loads the
checkpoint first checks sizes and digests against it (and, for folders without one, that every
``.safetensors`` file is as long as its header says), so a truncated or replaced checkpoint is a clear
error naming the rule to rerun, not a traceback from deep inside a loader.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from finextract.private_set import image_files
from finextract.backbones.specs import WEIGHT_SUFFIXES

CHECKSUMS = "checksums.json"
# The files of a local model folder that decide what it computes: weights, configs, tokenizer files.
# Model cards, figures and tables beside them (resources/base/MODEL_CARD.md, samples.png) are left out.
MODEL_SUFFIXES = (*WEIGHT_SUFFIXES, ".json", ".txt", ".model")

_memo: dict[tuple[str, int, int, int, int], str] = {}
_KEY = ("path", "size", "mtime_ns", "ctime_ns", "inode")
_cache_file: Path | None = None
_cache_dirty = False


class CheckpointError(ValueError):
    """A fine-tuned checkpoint is damaged or changed since it was written; the message says what to rerun."""


def use_cache(path: str | os.PathLike) -> None:
    """Remember digests across processes in ``path`` (JSON; a damaged or missing file is a cold cache)."""
    global _cache_file
    _cache_file = Path(path)
    try:
        entries = json.loads(_cache_file.read_text())
        _memo.update({tuple(e[k] for k in _KEY): e["sha256"] for e in entries})
    except (OSError, ValueError, KeyError, TypeError):
        pass


def save_cache() -> None:
    """Write the remembered digests, if a cache file is in use and something new was hashed."""
    global _cache_dirty
    if _cache_file is None or not _cache_dirty:
        return
    from finextract.io import save_text

    entries = [{**dict(zip(_KEY, key)), "sha256": digest} for key, digest in sorted(_memo.items())]
    try:
        save_text(_cache_file, json.dumps(entries))
        _cache_dirty = False
    except OSError:
        pass  # a read-only working directory: the cache is an optimisation only


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks; remembered per (absolute path, size, times, inode)."""
    global _cache_dirty
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    digest = _memo.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        digest = _memo[key] = sha.hexdigest()
        _cache_dirty = True
    return digest


def _combine(named: list[tuple[str, str]]) -> str:
    """One digest of (name, digest) pairs, so a renamed or added file changes it too."""
    return hashlib.sha256(json.dumps(sorted(named)).encode()).hexdigest()[:16]


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def weights_digest(spec: str) -> str:
    """A digest of a local model (folder or single file); a hub id stands for itself (``hub:<id>``)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return _combine([(path.name, file_digest(path))])
    if path.is_dir():
        return _combine([(str(p.relative_to(path)), file_digest(p)) for p in model_files(path)])
    return f"hub:{spec}"


def image_set_digest(folder: str | os.PathLike) -> str:
    """A digest of the images a private set loads (names and bytes; the caption is a param of its own)."""
    return _combine([(p.name, file_digest(p)) for p in image_files(Path(folder))])


# --- fine-tuned checkpoints -------------------------------------------------------------------------
def write_checksums(folder: str | os.PathLike) -> None:
    """``checksums.json`` in a fine-tuned checkpoint folder: size and SHA-256 of every file in it."""
    from finextract.io import save_json

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    save_json(folder / CHECKSUMS, {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_digest(p)}
                                   for p in files})


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be whole (header unreadable, data shorter or longer), or None."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            (header_size,) = struct.unpack("<Q", prefix)
            if 8 + header_size > size:
                return f"the header announces {header_size} bytes, the file has {size}"
            header = json.loads(f.read(header_size))
    except (OSError, ValueError) as error:
        return f"unreadable header ({error})"
    end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    expected = 8 + header_size + end
    if size != expected:
        return f"{size} bytes where its header says {expected}"
    return None


def _rule_that_writes(folder: Path) -> str:
    parts = folder.resolve().parts
    if "defences" in parts:
        return "defence_finetune"
    if "study" in parts:
        return "study_finetune"
    return "finetune"


def verify_checkpoint(folder: str | os.PathLike) -> None:
    """Raise CheckpointError when a fine-tuned checkpoint folder written by this workflow is not what it
    wrote. ``folder`` may be a snapshot sub-folder (the study's spi<S>/): its parent's checksums count."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # a hub id or a single file of a real-world target: its loader names it
    root = folder if (folder / CHECKSUMS).is_file() or not (folder.parent / CHECKSUMS).is_file() else folder.parent
    rerun = (f"rerun the rule that wrote it ({_rule_that_writes(root)}): "
             f"snakemake --forcerun '{root}' <your targets>")
    manifest = root / CHECKSUMS
    problems = []
    if manifest.is_file():
        try:
            expected = json.loads(manifest.read_text())
        except ValueError as error:
            raise CheckpointError(f"{manifest}: unreadable ({error}); {rerun}") from None
        for name, entry in expected.items():
            path = root / name
            if folder != root and folder not in path.parents:
                continue  # another snapshot of the study's ladder
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif path.stat().st_size != entry["size"]:
                problems.append(f"{path}: {path.stat().st_size} bytes, {entry['size']} when it was written")
            elif file_digest(path) != entry["sha256"]:
                problems.append(f"{path}: its content changed after it was written")
    else:
        for path in sorted(folder.rglob("*.safetensors")):
            problem = safetensors_problem(path)
            if problem:
                problems.append(f"{path}: {problem}")
    if problems:
        raise CheckpointError(f"fine-tuned checkpoint {folder} is damaged or changed since fine-tuning "
                              f"({'; '.join(problems[:3])}); {rerun}")
