"""Environment profiles: the adapted state of one environment (per-task multipliers, adapted heads, class names,
embedding signature for recognition) saved as ``<name>.safetensors`` + ``<name>.json``.

Writes go through temp files, fsync and rename; the JSON (written last) holds the sha256 of the tensors file, so
a half-written or altered profile is refused on load. A profile is tied to the model it was adapted from (the
sha256 of its weights) and refused by any other.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from mtml_core.backends.manifest import sha256_file, write_json_atomic

FORMAT = "mtml-profile-1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: object) -> str:
    """An environment/profile name: 1-64 of [A-Za-z0-9_.-], starting alphanumeric, no '..' (never a path)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise ValueError(f"environment name {name!r}: use 1-64 characters from [A-Za-z0-9_.-], starting with a "
                         f"letter or digit, without '..' (no paths)")
    return name


@dataclass
class Profile:
    """The adapted state of one environment (numpy arrays; None = identity multiplier / exported head)."""

    name: str
    multipliers: dict[str, np.ndarray | None]
    heads: dict[str, dict[str, np.ndarray] | None]
    class_names: tuple[str, ...] = ()
    signature: np.ndarray | None = None  # (S, D) L2-normalised plain embeddings of the support frames
    stats: dict[str, Any] = field(default_factory=dict)
    created: str = ""


class ProfileStore:
    """Profiles of one model in one directory. ``heads_spec``: task → param → shape (from the export manifest)."""

    def __init__(self, root: str | Path, model_sha256: str, heads_spec: Mapping[str, Mapping[str, list[int]]],
                 multiplier_size: int, embedding_size: int) -> None:
        self.root = Path(root)
        self.model_sha256 = model_sha256
        self.heads_spec = {t: {k: list(v) for k, v in spec.items()} for t, spec in heads_spec.items()}
        self.multiplier_size = multiplier_size
        self.embedding_size = embedding_size
        self._lock = threading.Lock()

    def _paths(self, name: str) -> tuple[Path, Path]:
        name = check_name(name)
        return self.root / f"{name}.json", self.root / f"{name}.safetensors"

    def save(self, profile: Profile) -> Path:
        """Write a profile atomically (replacing one of the same name). Returns the JSON path."""
        meta_path, data_path = self._paths(profile.name)
        tensors = self._tensors(profile)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tmp = data_path.with_name(data_path.name + ".tmp")
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            tmp.replace(data_path)
            doc = {"format": FORMAT, "name": profile.name,
                   "created": profile.created or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                   "model_sha256": self.model_sha256, "tensors": data_path.name,
                   "tensors_sha256": sha256_file(data_path), "class_names": list(profile.class_names),
                   "tasks": sorted({*profile.multipliers, *profile.heads}), "stats": profile.stats}
            write_json_atomic(meta_path, doc)
        return meta_path

    def _tensors(self, profile: Profile) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for task, m in profile.multipliers.items():
            if m is not None:
                out[f"multiplier.{task}"] = np.ascontiguousarray(m, np.float32).reshape(-1)
        for task, params in profile.heads.items():
            for key, value in (params or {}).items():
                out[f"head.{task}.{key}"] = np.ascontiguousarray(value, np.float32)
        if profile.signature is not None:
            out["signature"] = np.ascontiguousarray(profile.signature, np.float32)
        self._check(profile.name, out)
        return out

    def _check(self, name: str, tensors: Mapping[str, np.ndarray]) -> None:
        """ValueError unless every tensor is known and shaped for this model."""
        for key, value in tensors.items():
            kind, _, rest = key.partition(".")
            if kind == "multiplier":
                ok, want = rest in self.heads_spec and value.shape == (self.multiplier_size,), (self.multiplier_size,)
            elif kind == "head":
                task, _, param = rest.partition(".")
                want = self.heads_spec.get(task, {}).get(param)
                ok = want is not None and list(value.shape) == want
            elif key == "signature":
                ok, want = value.ndim == 2 and value.shape[1] == self.embedding_size, ("S", self.embedding_size)
            else:
                ok, want = False, "nothing"
            if not ok:
                raise ValueError(f"profile {name!r}: tensor {key} with shape {list(value.shape)} does not fit this "
                                 f"model (expected {want})")
            if not np.isfinite(value).all():
                raise ValueError(f"profile {name!r}: tensor {key} contains NaN or inf")
        for task in {k.split(".")[1] for k in tensors if k.startswith("head.")}:
            have = {k.split(".", 2)[2] for k in tensors if k.startswith(f"head.{task}.")}
            if have != set(self.heads_spec[task]):
                raise ValueError(f"profile {name!r}: head {task!r} is incomplete (missing "
                                 f"{sorted(set(self.heads_spec[task]) - have)})")

    def read_meta(self, name: str) -> dict[str, Any]:
        """The profile's JSON, checked for format and model; ValueError/FileNotFoundError otherwise."""
        meta_path, _ = self._paths(name)
        if not meta_path.is_file():
            raise FileNotFoundError(f"profile {name!r} not found in {self.root}")
        try:
            doc = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"profile {name!r}: {meta_path.name} is not valid JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("name") != name:
            raise ValueError(f"profile {name!r}: {meta_path.name} is not a {FORMAT} profile of that name")
        if doc.get("model_sha256") != self.model_sha256:
            raise ValueError(f"profile {name!r} was adapted from another model (weights sha256 "
                             f"{str(doc.get('model_sha256'))[:12]}…, serving {self.model_sha256[:12]}…)")
        return doc

    def load(self, name: str) -> Profile:
        """Read and verify a profile (checksum, model identity, tensor names/shapes/values)."""
        doc = self.read_meta(name)
        _, data_path = self._paths(name)
        if not data_path.is_file():
            raise FileNotFoundError(f"profile {name!r}: {data_path.name} is missing")
        if sha256_file(data_path) != doc.get("tensors_sha256"):
            raise ValueError(f"profile {name!r}: {data_path.name} does not match the checksum in its JSON "
                             f"(corrupt or modified)")
        try:
            tensors = load_file(str(data_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"profile {name!r}: {data_path.name} is not readable safetensors ({exc})") from exc
        self._check(name, tensors)
        tasks = doc.get("tasks", [])
        multipliers = {t: tensors.get(f"multiplier.{t}") for t in tasks}
        heads = {t: ({k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"head.{t}.")} or None)
                 for t in tasks}
        return Profile(name, multipliers, heads, tuple(doc.get("class_names", [])), tensors.get("signature"),
                       dict(doc.get("stats", {})), doc.get("created", ""))

    def names(self) -> list[str]:
        """Names of the profiles present (by their JSON files), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if NAME_RE.match(p.stem) and ".." not in p.stem)

    def summaries(self) -> list[dict[str, Any]]:
        """One summary per profile: name, created, tasks, class names, stats, and 'error' if it is unusable."""
        out = []
        for name in self.names():
            try:
                doc = self.read_meta(name)
                out.append({k: doc.get(k) for k in ("name", "created", "tasks", "class_names", "stats")})
            except (ValueError, OSError) as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def delete(self, name: str) -> None:
        """Remove a profile (JSON first, so a partial delete never leaves a loadable half)."""
        meta_path, data_path = self._paths(name)
        with self._lock:
            if not meta_path.is_file():
                raise FileNotFoundError(f"profile {name!r} not found in {self.root}")
            meta_path.unlink()
            data_path.unlink(missing_ok=True)
