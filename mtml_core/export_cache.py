"""Serve a checkpoint without exporting it by hand: the first use exports it (ONNX, a few seconds) into a cache
directory keyed by the checkpoint's checksums; later uses find the export there.

Concurrent first uses (two processes) are safe: each exports into a private temporary directory and renames it
into place; the loser of the race keeps the winner's export.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mtml_core.backends.manifest import MANIFEST, sha256_file
from mtml_core.checkpoint import CONFIG, WEIGHTS


def is_export(path: Path) -> bool:
    """Whether ``path`` is an export directory or a manifest file."""
    return path.is_file() or (path / MANIFEST).is_file()


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint directory (weights + config)."""
    return (path / WEIGHTS).is_file() and (path / CONFIG).is_file()


def cache_key(checkpoint: Path) -> str:
    """The cache entry name of a checkpoint: checksums of its weights and its config."""
    return f"{sha256_file(checkpoint / WEIGHTS)[:16]}-{sha256_file(checkpoint / CONFIG)[:8]}"


def resolve_export(path: Path, cache_dir: Path, log: Callable[[str], None] = lambda _: None) -> Path:
    """The export to serve for ``path``: an export directory or manifest as is; a checkpoint directory exported
    once into ``cache_dir`` (keyed by :func:`cache_key`) and reused afterwards. ``log`` gets one line saying
    which. ValueError when ``path`` is neither."""
    if is_export(path):
        return path
    if not is_checkpoint(path):
        raise ValueError(f"{path} is neither an export (no {MANIFEST}) nor a checkpoint ({WEIGHTS} + {CONFIG})")
    key = cache_key(path)
    target = cache_dir / key
    if (target / MANIFEST).is_file():
        log(f"checkpoint {path}: using the cached export {target}")
        return target
    log(f"checkpoint {path}: exporting it once to {target} (ONNX, takes a few seconds)")
    from mtml_core.export import export_run  # torch.onnx: imported only when an export is needed

    tmp = target.with_name(f"{key}.tmp-{os.getpid()}")
    try:
        export_run(path, tmp)
        tmp.rename(target)
    except OSError:
        if not (target / MANIFEST).is_file():  # else another process exported it meanwhile
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename
    return target
