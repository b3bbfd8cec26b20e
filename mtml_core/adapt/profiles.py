"""Environment profiles: the adapted state of one environment (per-task multipliers, adapted heads, class names,
embedding signature for recognition, and for a P-AM model each task's distribution over its multipliers) saved
as ``<name>.<digest>.safetensors`` + ``<name>.json``.

Crash safety (kill -9 at any instant leaves the old or the new version loadable, never neither): a save writes the
tensors to a new, content-addressed file (``<name>.<first 16 hex of its sha256>.safetensors``, through a temp file,
fsync and rename), then atomically replaces the JSON that names that file and carries its sha256, and only then
deletes the previous tensors file. Until the JSON's rename the old JSON names the untouched old tensors; after it
the new JSON names complete new ones. Leftovers of an interrupted save (``*.tmp`` files, tensors files no JSON
names) are removed when a store is opened. Saves, deletes and that clean-up hold an exclusive ``flock`` on
``<dir>/.lock``, so processes sharing a directory never remove each other's files mid-save.

Every file is size-checked (:data:`MAX_TENSORS_BYTES`, :data:`MAX_JSON_BYTES`) before it is read or hashed, and
only regular files are read. The JSON is validated against its whole schema in one place
(:meth:`ProfileStore.check_doc`): anything unexpected is a ValueError naming the field. A profile is tied to the
model it was adapted from (the sha256 of its weights) and refused by any other.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from mtml_core.adapt.labels import check_class_name

log = logging.getLogger(__name__)

FORMAT = "mtml-profile-1"
NAME_MAX = 64
# Profile / environment names: 1-64 characters, letters, digits, '_' and '-', starting with a letter or digit (so
# never a path, a hidden file or a name with a dot; the .srv comments say the same).
NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{NAME_MAX - 1}}}")
MAX_TENSORS_BYTES = 64 * 2**20  # a profile's tensors file (a 128x96 default model's profile: ~1 MiB)
MAX_JSON_BYTES = 1 * 2**20  # a profile's JSON
MAX_CLASS_NAMES = 256
MAX_CREATED = 64
KEYS = frozenset({"format", "name", "created", "model_sha256", "tensors", "tensors_sha256", "class_names", "tasks",
                  "stats"})
STAT_KEYS = frozenset({"shots", "loss_before", "loss_after", "loss_initial", "baseline", "depth_log_scale"})
BASELINES = ("serving", "initial")
DISTRIBUTION_KEYS = ("mu", "log_sigma", "mask")
LOCK_FILE = ".lock"
CALIBRATION_FILE = ".recognition.json"  # the model's recognition calibration (hidden, like the lock: not a profile)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSIONED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.[0-9a-f]{16}\.safetensors")


def check_name(name: object) -> str:
    """An environment/profile name: 1-64 of [A-Za-z0-9_-], starting with a letter or digit (never a path)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise ValueError(f"environment name {shown}: use 1-{NAME_MAX} characters from [A-Za-z0-9_-], starting "
                         f"with a letter or digit (no paths, no dots, no whitespace)")
    return name


def read_capped(path: Path, cap: int) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes; ValueError (before reading anything) otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO cannot stall the open
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if st.st_size > cap:
            raise ValueError(f"{path.name} has {st.st_size} bytes, more than the {cap}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(cap + 1)
    finally:
        os.close(fd)
    if len(data) > cap:
        raise ValueError(f"{path.name} grew past the {cap}-byte limit while being read")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``<path>.tmp``, fsync and rename (readers see the old or new bytes)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _json_number(value: object) -> float | int | None:
    """A stats number as JSON stores it: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value  # type: ignore[return-value]


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
    # P-AM only: task -> {"mu", "log_sigma"[, "mask"]} (M,) arrays of mtml_core.uncertainty.MultiplierDistribution
    distributions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class ProfileStore:
    """Profiles of one model in one directory. ``heads_spec``: task → param → shape (from the export manifest).

    Opening a store whose directory exists removes what interrupted saves left behind (see the module docstring).
    """

    def __init__(self, root: str | Path, model_sha256: str, heads_spec: Mapping[str, Mapping[str, list[int]]],
                 multiplier_size: int, embedding_size: int) -> None:
        self.root = Path(root)
        self.model_sha256 = model_sha256
        self.heads_spec = {t: {k: list(v) for k, v in spec.items()} for t, spec in heads_spec.items()}
        self.multiplier_size = multiplier_size
        self.embedding_size = embedding_size
        if self.root.is_dir():
            try:
                self.cleanup()
            except OSError as exc:  # a read-only directory still serves its profiles
                log.warning("profiles: cannot clean %s: %s", self.root, exc)

    def _paths(self, name: str) -> tuple[Path, str]:
        name = check_name(name)
        return self.root / f"{name}.json", name

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock on the directory (threads and processes); released by the kernel if the holder dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- writing ----------------------------------------------------------------------------------------------------
    def save(self, profile: Profile) -> Path:
        """Write a profile crash-safely (replacing one of the same name). Returns the JSON path."""
        meta_path, name = self._paths(profile.name)
        blob = save_tensors(self._tensors(profile), metadata={"format": FORMAT})
        if len(blob) > MAX_TENSORS_BYTES:
            raise ValueError(f"profile {name!r}: {len(blob)} bytes of tensors, more than {MAX_TENSORS_BYTES}")
        digest = hashlib.sha256(blob).hexdigest()
        data_name = f"{name}.{digest[:16]}.safetensors"
        doc = {"format": FORMAT, "name": name,
               "created": profile.created or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "model_sha256": self.model_sha256, "tensors": data_name, "tensors_sha256": digest,
               "class_names": list(profile.class_names), "tasks": sorted({*profile.multipliers, *profile.heads}),
               "stats": {t: {k: _json_number(v) for k, v in s.items()} for t, s in profile.stats.items()}}
        self.check_doc(name, doc)  # never write what load would refuse
        text = json.dumps(doc, indent=2, allow_nan=False).encode()
        if len(text) > MAX_JSON_BYTES:
            raise ValueError(f"profile {name!r}: {len(text)} bytes of JSON, more than {MAX_JSON_BYTES}")
        with self._locked():
            old = self._named_tensors(meta_path)
            _write_atomic(self.root / data_name, blob)
            _write_atomic(meta_path, text)  # the commit point: from here on the new version loads
            if old is not None and old != data_name:
                (self.root / old).unlink(missing_ok=True)
        return meta_path

    def _named_tensors(self, meta_path: Path) -> str | None:
        """The tensors file an existing JSON names (None when there is no readable JSON naming one)."""
        try:
            doc = json.loads(read_capped(meta_path, MAX_JSON_BYTES))
        except (OSError, ValueError, RecursionError):
            return None
        data = doc.get("tensors") if isinstance(doc, dict) else None
        if not isinstance(data, str):
            return None
        match = _VERSIONED.fullmatch(data)
        own = match is not None and match["name"] == meta_path.stem  # never another profile's file
        return data if own or data == f"{meta_path.stem}.safetensors" else None

    def cleanup(self) -> list[str]:
        """Remove temp files and tensors files that no profile JSON names (left by interrupted saves or deletes);
        a JSON that cannot be read keeps its files. Returns the names removed."""
        removed = []
        with self._locked():
            for entry in os.scandir(self.root):
                fname = entry.name
                if fname.endswith(".tmp"):
                    base = fname[:-4]
                    orphan = bool(_VERSIONED.fullmatch(base) or base == CALIBRATION_FILE or (
                        base.endswith(".json") and NAME_RE.fullmatch(base[:-5])))
                elif match := _VERSIONED.fullmatch(fname):
                    meta_path = self.root / f"{match['name']}.json"
                    named = self._named_tensors(meta_path)
                    # no JSON: orphan; a JSON that names another file: orphan; an unreadable JSON keeps its files
                    orphan = not meta_path.exists() or (named is not None and named != fname)
                else:
                    orphan = False
                if orphan:
                    try:
                        os.unlink(entry.path)
                        removed.append(fname)
                    except OSError as exc:
                        log.warning("profiles: cannot remove leftover %s: %s", fname, exc)
        if removed:
            log.info("profiles: removed leftovers of interrupted saves: %s", removed)
        return removed

    def save_calibration(self, doc: dict[str, Any]) -> None:
        """Store the recognition calibration of this store's model (a JSON object) crash-safely."""
        text = json.dumps(doc, allow_nan=False).encode()
        if len(text) > MAX_JSON_BYTES:
            raise ValueError(f"recognition calibration: {len(text)} bytes, more than {MAX_JSON_BYTES}")
        with self._locked():
            _write_atomic(self.root / CALIBRATION_FILE, text)

    def load_calibration(self) -> object:
        """The stored recognition calibration as parsed JSON (unchecked), or None when absent or unreadable."""
        try:
            return json.loads(read_capped(self.root / CALIBRATION_FILE, MAX_JSON_BYTES).decode("utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("profiles: ignoring unreadable %s: %s", CALIBRATION_FILE, exc)
            return None

    def _tensors(self, profile: Profile) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for task, m in profile.multipliers.items():
            if m is not None:
                out[f"multiplier.{task}"] = np.ascontiguousarray(m, np.float32).reshape(-1)
        for task, params in profile.heads.items():
            for key, value in (params or {}).items():
                out[f"head.{task}.{key}"] = np.ascontiguousarray(value, np.float32)
        for task, parts in profile.distributions.items():
            for key, value in parts.items():
                out[f"distribution.{task}.{key}"] = np.ascontiguousarray(value, np.float32).reshape(-1)
        if profile.signature is not None:
            out["signature"] = np.ascontiguousarray(profile.signature, np.float32)
        self._check(profile.name, out, sorted({*profile.multipliers, *profile.heads}), profile.class_names)
        return out

    # -- validation -------------------------------------------------------------------------------------------------
    def _check(self, name: str, tensors: Mapping[str, np.ndarray], tasks: list[str],
               class_names: tuple[str, ...] | list[str]) -> None:
        """ValueError unless every tensor is known, float32, finite, shaped for this model and of a listed task."""
        for key, value in tensors.items():
            kind, _, rest = key.partition(".")
            task = rest.partition(".")[0]
            if kind == "multiplier":
                ok, want = rest in self.heads_spec and value.shape == (self.multiplier_size,), (self.multiplier_size,)
            elif kind == "head":
                want = self.heads_spec.get(task, {}).get(rest.partition(".")[2])
                ok = want is not None and list(value.shape) == want
            elif kind == "distribution":
                want = (self.multiplier_size,)
                ok = rest.partition(".")[2] in DISTRIBUTION_KEYS and value.shape == want
            elif key == "signature":
                ok, want = value.ndim == 2 and value.shape[1] == self.embedding_size, ("S", self.embedding_size)
            else:
                ok, want = False, "nothing"
            if not ok:
                raise ValueError(f"profile {name!r}: tensor {key} with shape {list(value.shape)} does not fit this "
                                 f"model (expected {want})")
            if value.dtype != np.float32:
                raise ValueError(f"profile {name!r}: tensor {key} has dtype {value.dtype}, expected float32")
            if not np.isfinite(value).all():
                raise ValueError(f"profile {name!r}: tensor {key} contains NaN or inf")
            if kind in ("multiplier", "head", "distribution") and task not in tasks:
                raise ValueError(f"profile {name!r}: tensor {key} belongs to task {task!r}, not in 'tasks' {tasks}")
        for task in {k.split(".")[1] for k in tensors if k.startswith("head.")}:
            have = {k.split(".", 2)[2] for k in tensors if k.startswith(f"head.{task}.")}
            if have != set(self.heads_spec[task]):
                raise ValueError(f"profile {name!r}: head {task!r} is incomplete (missing "
                                 f"{sorted(set(self.heads_spec[task]) - have)})")
        for task in {k.split(".")[1] for k in tensors if k.startswith("distribution.")}:
            parts = {k.split(".", 2)[2] for k in tensors if k.startswith(f"distribution.{task}.")}
            if not {"mu", "log_sigma"} <= parts:
                raise ValueError(f"profile {name!r}: distribution {task!r} needs both mu and log_sigma")
        if any(k.startswith("head.class.") for k in tensors) and not class_names:
            raise ValueError(f"profile {name!r}: field 'class_names' is empty but the profile has a class head")

    def check_doc(self, name: str, doc: object) -> dict[str, Any]:
        """The whole JSON schema of a profile named ``name``: ValueError naming the first field that does not fit
        (unknown or missing keys, types, lengths, formats, another model). Returns ``doc``."""
        where = f"profile {name!r}"

        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"{where}: field {key!r} {why}")

        if not isinstance(doc, dict):
            raise ValueError(f"{where}: the JSON is a {type(doc).__name__}, expected an object")
        unknown, missing = sorted(map(str, set(doc) - KEYS)), sorted(KEYS - set(doc))
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown[:5]}")
        if missing:
            raise ValueError(f"{where}: missing fields {missing}")
        if doc["format"] != FORMAT:
            raise bad("format", f"must be {FORMAT!r}")
        if doc["name"] != name:
            raise bad("name", "does not match the file name")
        for key in ("model_sha256", "tensors_sha256"):
            if not isinstance(doc[key], str) or not _HEX64.fullmatch(doc[key]):
                raise bad(key, "must be 64 lowercase hex digits")
        if doc["model_sha256"] != self.model_sha256:
            raise ValueError(f"{where} was adapted from another model (weights sha256 {doc['model_sha256'][:12]}…, "
                             f"serving {self.model_sha256[:12]}…)")
        created = doc["created"]
        if not isinstance(created, str) or len(created) > MAX_CREATED or not created.isprintable():
            raise bad("created", f"must be a printable string of at most {MAX_CREATED} characters")
        tensors = doc["tensors"]
        if not isinstance(tensors, str) or not (tensors == f"{name}.safetensors" or (
                _VERSIONED.fullmatch(tensors) and tensors == f"{name}.{doc['tensors_sha256'][:16]}.safetensors")):
            raise bad("tensors", f"must be '{name}.<first 16 hex digits of tensors_sha256>.safetensors'")
        tasks = doc["tasks"]
        if not isinstance(tasks, list) or not all(isinstance(t, str) and t in self.heads_spec for t in tasks) or len(
                set(tasks)) != len(tasks):
            raise bad("tasks", f"must be a list of distinct task names of this model {sorted(self.heads_spec)}")
        names = doc["class_names"]
        if not isinstance(names, list) or len(names) > MAX_CLASS_NAMES:
            raise bad("class_names", f"must be a list of at most {MAX_CLASS_NAMES} strings")
        for i, n in enumerate(names):
            try:
                if check_class_name(n) != n:
                    raise ValueError(f"{n!r} has leading or trailing whitespace")
            except ValueError as exc:
                raise bad("class_names", f"entry {i}: {exc}") from None
        if len(set(names)) != len(names):
            raise bad("class_names", "has duplicates")
        stats = doc["stats"]
        if not isinstance(stats, dict) or not all(isinstance(t, str) and t in tasks for t in stats):
            raise bad("stats", "must be an object keyed by the profile's tasks")
        for task, s in stats.items():
            if not isinstance(s, dict) or not set(s) <= STAT_KEYS:
                raise bad("stats", f"[{task!r}] must be an object with keys from {sorted(STAT_KEYS)}")
            for key, value in s.items():
                if key == "shots":
                    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
                elif key == "baseline":
                    ok = value in BASELINES
                else:
                    ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                                           and math.isfinite(value))
                if not ok:
                    raise bad("stats", f"[{task!r}][{key!r}] has an invalid value {str(value)[:40]!r}")
        return doc

    # -- reading ----------------------------------------------------------------------------------------------------
    def read_meta(self, name: str) -> dict[str, Any]:
        """The profile's JSON, size-checked and validated (:meth:`check_doc`); ValueError/FileNotFoundError
        otherwise."""
        meta_path, name = self._paths(name)
        if not meta_path.exists():
            raise FileNotFoundError(f"profile {name!r} not found in {self.root}")
        try:
            raw = read_capped(meta_path, MAX_JSON_BYTES)
        except ValueError as exc:
            raise ValueError(f"profile {name!r}: {exc}") from None
        try:
            # NaN / Infinity (older profiles wrote an inf class loss) are read as null
            doc = json.loads(raw.decode("utf-8"), parse_constant=lambda _: None)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"profile {name!r}: {meta_path.name} is not valid JSON "
                             f"({type(exc).__name__}: {str(exc)[:100]})") from None
        return self.check_doc(name, doc)

    def load(self, name: str) -> Profile:
        """Read and verify a profile (sizes, schema, checksum, model identity, tensor names/shapes/values)."""
        doc = self.read_meta(name)
        data_path = self.root / doc["tensors"]
        if not data_path.exists():
            raise FileNotFoundError(f"profile {name!r}: {data_path.name} is missing")
        try:
            blob = read_capped(data_path, MAX_TENSORS_BYTES)
        except ValueError as exc:
            raise ValueError(f"profile {name!r}: {exc}") from None
        if hashlib.sha256(blob).hexdigest() != doc["tensors_sha256"]:
            raise ValueError(f"profile {name!r}: {data_path.name} does not match the checksum in its JSON "
                             f"(corrupt or modified)")
        try:
            tensors = load_tensors(blob)
        except (SafetensorError, ValueError, TypeError) as exc:
            raise ValueError(f"profile {name!r}: {data_path.name} is not readable safetensors ({exc})") from None
        tasks = doc["tasks"]
        self._check(name, tensors, tasks, doc["class_names"])
        multipliers = {t: tensors.get(f"multiplier.{t}") for t in tasks}
        heads = {t: ({k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"head.{t}.")} or None)
                 for t in tasks}
        distributions = {t: {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"distribution.{t}.")}
                         for t in tasks}
        return Profile(name, multipliers, heads, tuple(doc["class_names"]), tensors.get("signature"),
                       {t: dict(s) for t, s in doc["stats"].items()}, doc["created"],
                       {t: d for t, d in distributions.items() if d})

    def copy(self, name: str, dest: str | Path) -> Path:
        """Copy a verified profile into directory ``dest`` (tensors first, then the JSON that names them, each
        written atomically); returns the copied JSON's path."""
        self.load(name)
        doc = self.read_meta(name)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        _write_atomic(dest / doc["tensors"], read_capped(self.root / doc["tensors"], MAX_TENSORS_BYTES))
        _write_atomic(dest / f"{name}.json", read_capped(self.root / f"{name}.json", MAX_JSON_BYTES))
        return dest / f"{name}.json"

    def names(self) -> list[str]:
        """Names of the profiles present (by their JSON files), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if NAME_RE.fullmatch(p.stem))

    def summaries(self) -> list[dict[str, Any]]:
        """One summary per profile: name, created, tasks, class names, stats, and 'error' if it is unusable (a bad
        file is reported, never raised)."""
        out = []
        for name in self.names():
            try:
                doc = self.read_meta(name)
                data = self.root / doc["tensors"]
                size = data.stat().st_size
                if size > MAX_TENSORS_BYTES:
                    raise ValueError(f"profile {name!r}: {data.name} has {size} bytes, more than "
                                     f"{MAX_TENSORS_BYTES}")
                out.append({k: doc[k] for k in ("name", "created", "tasks", "class_names", "stats")})
            except (ValueError, OSError) as exc:
                out.append({"name": name, "error": str(exc)})
        return out

    def delete(self, name: str) -> None:
        """Remove a profile (JSON first, so a partial delete never leaves a loadable half; leftovers of a killed
        delete are removed when a store is next opened)."""
        meta_path, name = self._paths(name)
        with self._locked():
            if not meta_path.exists():
                raise FileNotFoundError(f"profile {name!r} not found in {self.root}")
            data = self._named_tensors(meta_path)
            meta_path.unlink()
            if data is not None:
                (self.root / data).unlink(missing_ok=True)
            for path in self.root.glob(f"{name}.*.safetensors"):  # names have no dots: only this profile's
                if _VERSIONED.fullmatch(path.name):
                    path.unlink(missing_ok=True)
