"""A dataset of datasets: a YAML spec lists data sources; each becomes domains of frame accessors per split.

    root: ../../../shared/data         # relative paths below are relative to this (itself: to the spec's folder)
    sources:
      - name: redkitchen               # unique; names its domains and every error about it
        loader: rgbd_sequence          # a name in LOADERS
        path: rgbd/7scenes_redkitchen
        tasks: [depth, normals]        # what this source labels; other tasks are absent from its frames
        weight: 1.0                    # relative sampling weight (> 0), default 1
        split: {by: frame, train: 0.6, val: 0.2, test: 0.2, gap: 25}
        options: {depth_scale: 1000}   # loader keyword arguments (LOADERS[loader].options)

`split` says how a source's data divides into train / val / test:
- a split name (`split: test`): everything in that split;
- `{by: domain, train, val, test, seed}`: whole domains (e.g. RGB-D sequences, DIODE scenes) per split, seeded;
- `{by: frame, train, val, test, gap}`: each domain's frames in order, cut into contiguous train / val / test blocks
  with `gap` frames dropped between two blocks (consecutive video frames are near copies of each other);
- class sources: `{by: category, ...}` (held-out categories, for few-shot tests) or `{by: item, ...}` (every
  category's images divided in order, for named-category validation).
The fractions are non-negative and sum to 1. The built-in world (`loader: synth`) has its own environment and
category splits and takes no `split`.

    sources = load_sources("training/configs/data_real.yaml")
    for domain in sources[0].domains("train"):
        frame = domain.frame(0)                  # a Frame with only the source's tasks labelled
    places = sources[1].classes("train")         # a ClassSource for class episodes (class sources only)
    held_out = SpecClasses(sources, "test")      # every class source's test categories, one ClassSource

Everything is indexed when the spec is loaded (a missing or malformed dataset fails then, naming the source,
the path and what was expected) and read from disk frame by frame afterwards. Normals of real depth sources are
the pseudo ground truth of `mtml_core.data.pseudo_normals` (about 1 s per 640×480 frame), never measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtml_core.config import TASKS
from mtml_core.data.loaders.common import ImageClassSet, split_classes
from mtml_core.data.loaders.depth import annotated_depth_frames, kitti_depth_frames
from mtml_core.data.loaders.diode import diode_frames
from mtml_core.data.loaders.nyu import nyu_labeled_mat, nyu_sync_frames
from mtml_core.data.loaders.places import class_folders
from mtml_core.data.loaders.rgbd_sequence import rgbd_sequences
from mtml_core.data.loaders.yorkurban import yorkurban_frames
from mtml_core.data.pseudo_normals import PSEUDO_WINDOWS_VGA, pseudo_normals, pseudo_windows
from mtml_core.data.sample import Frame
from mtml_core.preprocess import resize_frame

SPLITS = ("train", "val", "test")
SPLIT_KINDS = ("domain", "frame", "category", "item")
SOURCE_KEYS = ("name", "loader", "path", "tasks", "weight", "split", "options")
Frames = Sequence[Frame]


class SpecError(ValueError):
    """A data spec that cannot be used; the message names the file, the source and the key."""


# -- the loader registry ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loader:
    """How to open one kind of dataset: the tasks it can label, its options, and what it yields.

    `domains(path, options)` gives `[(domain name, lazy frames)]`; `classes(path, options)` (class sources) gives an
    ImageClassSet and its category ids by class name."""

    labels: frozenset[str]
    options: Mapping[str, type]
    domains: Callable[[Path, dict], list[tuple[str, Frames]]] | None = None
    classes: Callable[[Path, dict], tuple[ImageClassSet, dict[str, int]]] | None = None
    doc: str = ""


def _rgbd(path: Path, opts: dict) -> list[tuple[str, Frames]]:
    K = opts.get("K")
    seqs = rgbd_sequences(path, K=None if K is None else np.asarray(K, np.float32), depth_scale=opts.get("depth_scale"))
    return [(s.env if s.root == path else s.root.relative_to(path).as_posix(), s) for s in seqs]


def _diode(path: Path, opts: dict) -> list[tuple[str, Frames]]:
    frames = diode_frames(path)
    scenes: dict[str, list[int]] = {}
    for i, depth_path in enumerate(frames.items):  # <split>/<indoors|outdoor>/scene_*/scan_*/<stem>_depth.npy
        scenes.setdefault(Path(depth_path).parents[1].relative_to(path).as_posix(), []).append(i)
    return [(name, _Subset(frames, idx)) for name, idx in sorted(scenes.items())]


def _miniplaces(path: Path, opts: dict) -> tuple[ImageClassSet, dict[str, int]]:
    """MiniPlaces devkit layout: `images/train/<letter>/<category>[/<sub>]/*.jpg` and `categories.txt`."""
    listing = path / "categories.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"no categories.txt in {path} (expected the MiniPlaces layout: categories.txt "
                                f"with '/<letter>/<category> <id>' lines and images/train/<letter>/<category>/)")
    ids: dict[str, int] = {}
    for no, line in enumerate(listing.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].startswith("/") or not parts[1].isdigit():
            raise ValueError(f"malformed {listing} line {no}: expected '/<letter>/<category> <id>', got {line!r}")
        ids[parts[0].strip("/")] = int(parts[1])
    images = path / "images" / str(opts.get("images", "train"))
    data = class_folders(images, min_items=int(opts.get("min_items", 1)))
    unknown = sorted(set(data.class_names()) - set(ids))
    if unknown:
        raise ValueError(f"{images}: folders {unknown[:5]} are not listed in {listing}")
    return data, {c: ids[c] for c in data.class_names()}


def _folders(path: Path, opts: dict) -> tuple[ImageClassSet, dict[str, int]]:
    data = class_folders(path, min_items=int(opts.get("min_items", 1)))
    return data, {c: i for i, c in enumerate(data.class_names())}


def _kitti(path: Path, opts: dict) -> list[tuple[str, Frames]]:
    if "images" not in opts:
        raise SpecError("options.images: required (the folder of KITTI colour images matching the depth PNGs)")
    return [("kitti", kitti_depth_frames(path, opts["images"]))]


LOADERS: dict[str, Loader] = {
    "synth": Loader(frozenset(TASKS), {"frames": int, "size": list},
                    doc="the built-in world: one domain per environment of the split, frames rendered on demand"),
    "rgbd_sequence": Loader(frozenset({"depth", "normals"}), {"K": list, "depth_scale": float}, _rgbd,
                            doc="7-Scenes / TUM RGB-D sequence folders: one domain per sequence"),
    "nyu_sync": Loader(frozenset({"depth", "normals"}), {}, lambda p, o: [("nyu", nyu_sync_frames(p))],
                       doc="NYU v2 sync folders (rgb_N.jpg + sync_depth_N.png): one domain"),
    "nyu_mat": Loader(frozenset({"depth", "normals"}), {}, lambda p, o: [("nyu", nyu_labeled_mat(p))],
                      doc="the NYU v2 labelled .mat: one domain"),
    "depth_annotations": Loader(frozenset({"depth", "normals"}), {},
                                lambda p, o: [(p.parent.name, annotated_depth_frames(p))],
                                doc="a Metric3D-style test_annotations.json (NYU / KITTI demo sets): one domain"),
    "kitti_depth": Loader(frozenset({"depth"}), {"images": str}, _kitti,
                          doc="KITTI depth PNGs (path) and same-named colour images (options.images): one domain"),
    "diode": Loader(frozenset({"depth", "normals"}), {}, _diode, doc="DIODE: one domain per scene"),
    "places": Loader(frozenset({"class"}), {"images": str, "min_items": int}, classes=_miniplaces,
                     doc="MiniPlaces / Places-style categories: the category is the folder, ids from categories.txt"),
    "class_folders": Loader(frozenset({"class"}), {"min_items": int}, classes=_folders,
                            doc="one class per folder of images (ids in sorted order)"),
    "yorkurban": Loader(frozenset({"vp"}), {}, lambda p, o: [("yorkurban", yorkurban_frames(p))],
                        doc="York Urban (vertical vanishing direction only): one domain"),
}


# -- domains ---------------------------------------------------------------------------------------------------------
class _Subset(Sequence):
    """Frames `indices` of a lazy frame list."""

    def __init__(self, frames: Frames, indices: Sequence[int]) -> None:
        self.frames, self.indices = frames, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        return self.frames[self.indices[i]]


@dataclass
class Domain:
    """One environment of one source in one split: `frame(i)` reads frame i with only `tasks` labelled."""

    name: str
    source: str
    split: str
    tasks: tuple[str, ...]
    frames: Frames = field(repr=False)
    category_names: Mapping[int, str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, i: int, size: Sequence[int] | None = None) -> Frame:
        """Frame i: rgb, K, pose and env always; labels only for this domain's tasks (pseudo normals derived). With
        ``size`` (H, W) the frame is resized first (rgb by area, depth by nearest neighbour, K scaled) and the
        pseudo normals are fitted at that size (windows scaled to its width: cheap at a network's input size)."""
        fr = self.frames[i]
        windows = PSEUDO_WINDOWS_VGA
        if size is not None:
            fr = resize_frame(fr, size)
            windows = pseudo_windows(fr.size[1])
        tasks = self.tasks
        normals = fr.normals if "normals" in tasks else None
        if "normals" in tasks and normals is None:
            if fr.depth is None or fr.K is None:
                raise ValueError(f"{self.source}/{self.name} frame {i}: no normals, and no depth + K to derive them")
            normals = pseudo_normals(fr.depth, fr.K, windows=windows)
        keep_vp = "vp" in tasks
        return fr.with_(depth=fr.depth if "depth" in tasks else None, normals=normals,
                        vp_dirs=fr.vp_dirs if keep_vp else None, vp_pixels=fr.vp_pixels if keep_vp else None,
                        vp_at_infinity=fr.vp_at_infinity if keep_vp else None,
                        category=fr.category if "class" in tasks else None,
                        category_name=fr.category_name if "class" in tasks else None,
                        env=f"{self.source}/{self.name}")


class _ClassFrames(Sequence):
    """The images of a class set as Frames labelled with their category (class-major order)."""

    def __init__(self, data: ImageClassSet, ids: Mapping[str, int], names: Mapping[str, str]) -> None:
        self.data, self.ids, self.names = data, ids, names
        self.index = [(c, j) for c in data.class_names() for j in range(data.num_items(c))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        c, j = self.index[i]
        return Frame(rgb=self.data.rgb(c, j), category=self.ids[c], category_name=self.names[c])


def category_name(class_name: str) -> str:
    """A readable category name of a class folder path: the MiniPlaces letter folder dropped (`k/kitchen` →
    `kitchen`, `t/track/outdoor` → `track/outdoor`)."""
    parts = class_name.split("/")
    return "/".join(parts[1:]) if len(parts) > 1 and len(parts[0]) == 1 else class_name


# -- splits ----------------------------------------------------------------------------------------------------------
def _blocks(n: int, fractions: Sequence[float], gap: int) -> dict[str, range]:
    """Contiguous train / val / test index ranges of n ordered items, `gap` items dropped between two blocks."""
    used = [s for s, f in zip(SPLITS, fractions, strict=True) if f > 0]
    usable = max(0, n - gap * (len(used) - 1))
    exact = {s: f * usable for s, f in zip(SPLITS, fractions, strict=True)}
    sizes = {s: math.floor(v) for s, v in exact.items()}
    by_remainder = sorted(used, key=lambda s: sizes[s] - exact[s])  # largest remainder first, ties in split order
    for s in by_remainder[: usable - sum(sizes.values())]:
        sizes[s] += 1
    out, start = {}, 0
    for s in SPLITS:
        if sizes[s] or s in used:
            out[s] = range(start, start + sizes[s])
            start += sizes[s] + gap
    return {s: out.get(s, range(0)) for s in SPLITS}


@dataclass(frozen=True)
class SplitRule:
    """How a source divides into splits: everything in `whole`, or `by` with `fractions`, `gap` and `seed`."""

    whole: str | None = None
    by: str | None = None
    fractions: tuple[float, float, float] = (1.0, 0.0, 0.0)
    gap: int = 0
    seed: int = 0


@dataclass
class Source:
    """One entry of a data spec, opened: its domains per split and, for class sources, its ClassSource per split."""

    name: str
    loader: str
    path: Path | None
    tasks: tuple[str, ...]
    weight: float
    split_rule: SplitRule
    options: dict[str, Any]
    _domains: list[tuple[str, Frames]] = field(default_factory=list, repr=False)
    _classes: tuple[ImageClassSet, dict[str, int]] | None = field(default=None, repr=False)

    def _check(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")

    def domains(self, split: str) -> list[Domain]:
        """The source's domains in `split` (possibly none), each a lazy frame accessor."""
        self._check(split)
        if self.loader == "synth":
            return self._synth_domains(split)
        rule = self.split_rule
        if self._classes is not None:
            data = self.classes(split)
            if data is None:
                return []
            ids = self._classes[1]
            names = {c: category_name(c) for c in data.class_names()}
            return [Domain(self.name, self.name, split, self.tasks, _ClassFrames(data, ids, names),
                           {ids[c]: names[c] for c in data.class_names()})]
        if rule.whole is not None:
            chosen = self._domains if rule.whole == split else []
        elif rule.by == "domain":
            parts = split_classes([n for n, _ in self._domains], rule.fractions, rule.seed)
            chosen = [(n, f) for n, f in self._domains if n in parts[split]]
        else:  # by frame
            chosen = [(n, _Subset(f, _blocks(len(f), rule.fractions, rule.gap)[split])) for n, f in self._domains]
        return [Domain(n, self.name, split, self.tasks, f) for n, f in chosen if len(f)]

    def classes(self, split: str) -> Any:
        """The ClassSource of `split` for class episodes (class sources and the built-in world), None if empty."""
        self._check(split)
        if "class" not in self.tasks:
            raise ValueError(f"source {self.name!r} does not label the class task")
        if self.loader == "synth":
            from mtml_core.data.episodes import SynthCategories

            return SynthCategories(split, tuple(self.options.get("size", (96, 128))), self.options.get("frames", 32))
        data, _ = self._classes  # type: ignore[misc]
        rule = self.split_rule
        if rule.whole is not None:
            return data.subset(data.class_names(), split) if rule.whole == split else None
        if rule.by == "category":
            names = split_classes(data.class_names(), rule.fractions, rule.seed)[split]
            return data.subset(names, split) if names else None
        items = {c: [data.items[c][j] for j in _blocks(data.num_items(c), rule.fractions, rule.gap)[split]]
                 for c in data.class_names()}
        items = {c: v for c, v in items.items() if v}
        return ImageClassSet(items, data.read, split, data.cache) if items else None

    def _synth_domains(self, split: str) -> list[Domain]:
        from mtml_core.data.spec import builtin_envs
        from mtml_core.data.synth import render_frame

        size = tuple(self.options.get("size", (96, 128)))
        n = int(self.options.get("frames", 32))
        return [Domain(spec.name, self.name, split, self.tasks, _Rendered(spec, n, size, render_frame))
                for spec in builtin_envs(split)]


class _Rendered(Sequence):
    """Frames 0..n-1 of a built-in environment, rendered when asked for."""

    def __init__(self, spec: Any, n: int, size: tuple, render: Callable[..., Frame]) -> None:
        self.spec, self.n, self.size, self.render = spec, n, size, render

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(f"frame {i} of {self.n}")
        return self.render(self.spec, i, self.size)


# -- parsing ---------------------------------------------------------------------------------------------------------
def _split_rule(where: str, value: object, loader: str) -> SplitRule:
    if loader == "synth":
        if value is not None:
            raise SpecError(f"{where}.split: the built-in world has fixed splits; remove this key")
        return SplitRule(whole=None, by="world")
    if value is None:
        raise SpecError(f"{where}.split: required (a split name, or {{by: {'|'.join(SPLIT_KINDS)}, train: f, "
                        f"val: f, test: f}})")
    if isinstance(value, str):
        if value not in SPLITS:
            raise SpecError(f"{where}.split: {value!r} is not one of {list(SPLITS)}")
        return SplitRule(whole=value)
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}.split: expected a split name or a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - {"by", *SPLITS, "gap", "seed"})
    if unknown:
        raise SpecError(f"{where}.split: unknown key(s) {unknown} (allowed: by, train, val, test, gap, seed)")
    by = value.get("by")
    allowed = ("category", "item") if LOADERS[loader].classes is not None else ("domain", "frame")
    if by not in allowed:
        raise SpecError(f"{where}.split.by: must be one of {list(allowed)} for loader {loader!r}, got {by!r}")
    fractions = []
    for s in SPLITS:
        f = value.get(s, 0.0)
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1:
            raise SpecError(f"{where}.split.{s}: a fraction in [0, 1], got {f!r}")
        fractions.append(float(f))
    if abs(sum(fractions) - 1) > 1e-6:
        raise SpecError(f"{where}.split: train + val + test must be 1, got {sum(fractions):g}")
    gap, seed = value.get("gap", 0), value.get("seed", 0)
    for key, v in (("gap", gap), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SpecError(f"{where}.split.{key}: a non-negative integer, got {v!r}")
    if gap and by in ("domain", "category"):
        raise SpecError(f"{where}.split.gap: only for by: frame or by: item")
    return SplitRule(by=by, fractions=tuple(fractions), gap=gap, seed=seed)  # type: ignore[arg-type]


def _options(where: str, value: object, loader: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}.options: expected a mapping, got {type(value).__name__}")
    allowed = LOADERS[loader].options
    out = {}
    for key, v in value.items():
        if key not in allowed:
            raise SpecError(f"{where}.options.{key}: unknown for loader {loader!r} "
                            f"(allowed: {sorted(allowed) or 'none'})")
        want = allowed[key]
        ok = not isinstance(v, bool) and isinstance(v, (int, float) if want is float else want)
        if not ok:
            raise SpecError(f"{where}.options.{key}: expected {want.__name__}, got {v!r}")
        out[key] = float(v) if want is float else v
    if loader == "synth":
        if out.get("frames", 1) < 1:
            raise SpecError(f"{where}.options.frames: must be >= 1")
        size = out.get("size", [96, 128])
        if len(size) != 2 or not all(isinstance(s, int) and s >= 8 for s in size):
            raise SpecError(f"{where}.options.size: expected [H, W] with H, W >= 8, got {size!r}")
    if "K" in out:
        K = np.asarray(out["K"], dtype=object)
        if K.shape != (3, 3) or not all(isinstance(x, (int, float)) for x in K.ravel()):
            raise SpecError(f"{where}.options.K: expected a 3x3 list of numbers, got {out['K']!r}")
    return out


def parse_source(entry: object, where: str, root: Path) -> Source:
    """One `sources` entry, validated (nothing is opened yet); SpecError names `where` and the key."""
    if not isinstance(entry, Mapping):
        raise SpecError(f"{where}: expected a mapping with keys {list(SOURCE_KEYS)}, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise SpecError(f"{where}.name: required, a non-empty string without '/', got {name!r}")
    where = f"{where} ({name})"
    unknown = sorted(set(entry) - set(SOURCE_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown} (allowed: {', '.join(SOURCE_KEYS)})")
    loader = entry.get("loader")
    if loader not in LOADERS:
        raise SpecError(f"{where}.loader: {loader!r} is not one of {sorted(LOADERS)}")
    tasks = entry.get("tasks")
    if not isinstance(tasks, list) or not tasks or len(set(tasks)) != len(tasks):
        raise SpecError(f"{where}.tasks: required, a non-empty list of distinct tasks from {list(TASKS)}, "
                        f"got {tasks!r}")
    cannot = [t for t in tasks if t not in LOADERS[loader].labels]
    if cannot:
        raise SpecError(f"{where}.tasks: loader {loader!r} does not label {cannot} (it labels "
                        f"{sorted(LOADERS[loader].labels)})")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 or not math.isfinite(weight):
        raise SpecError(f"{where}.weight: a positive number, got {weight!r}")
    path = entry.get("path")
    if loader == "synth":
        if path is not None:
            raise SpecError(f"{where}.path: the built-in world has no path; remove this key")
    elif not isinstance(path, str) or not path:
        raise SpecError(f"{where}.path: required, the dataset's file or folder")
    options = _options(where, entry.get("options"), loader)
    if loader == "kitti_depth" and "images" in options:
        options["images"] = str(root / options["images"])  # a folder like `path`; for places: a subfolder name
    return Source(name, loader, None if path is None else root / path, tuple(t for t in TASKS if t in tasks),
                  float(weight), _split_rule(where, entry.get("split"), loader), options)


def open_source(source: Source, where: str = "") -> Source:
    """Index the source's dataset (reads listings, not images); errors name the source, path and expectation."""
    spec = LOADERS[source.loader]
    if source.loader == "synth":
        return source
    label = f"{where + ' ' if where else ''}source {source.name!r} ({source.loader}) at {source.path}"
    try:
        if spec.classes is not None:
            source._classes = spec.classes(source.path, source.options)  # type: ignore[arg-type]
        else:
            source._domains = spec.domains(source.path, source.options)  # type: ignore[arg-type, misc]
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{label}: {err}") from None
    except (ValueError, OSError) as err:
        raise SpecError(f"{label}: {err}") from None
    if source.split_rule.by == "domain" and len(source._domains) < 2:
        raise SpecError(f"{label}: split by domain needs several domains, found {len(source._domains)}; use "
                        f"by: frame or a split name")
    return source


def load_sources(path: str | Path, root: str | Path | None = None) -> list[Source]:
    """Parse, validate and open a data spec; `root` overrides the spec's own `root` for relative paths."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data spec not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise SpecError(f"{path}: expected a mapping with a non-empty list 'sources' (and optionally 'root')")
    unknown = sorted(set(doc) - {"root", "sources"})
    if unknown:
        raise SpecError(f"{path}: unknown top-level key(s) {unknown} (allowed: root, sources)")
    if root is None:
        spec_root = doc.get("root", ".")
        if not isinstance(spec_root, str):
            raise SpecError(f"{path}: root must be a folder path, got {spec_root!r}")
        root = path.parent / spec_root
    sources = [parse_source(e, f"{path}: sources[{i}]", Path(root)) for i, e in enumerate(doc["sources"])]
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"{path}: source names must be unique, repeated: {dupes}")
    return [open_source(s, f"{path}:") for s in sources]


class SpecClasses:
    """The categories of a spec's class sources in one split, as one ClassSource for class episodes (e.g. MiniPlaces
    split by category: few-shot tests on held-out categories). Class names are the sources' own (prefixed with
    `<source>:` when the spec has several class sources); decoded images are kept in memory once read."""

    def __init__(self, sources: Sequence[Source], split: str) -> None:
        chosen = [s for s in sources if "class" in s.tasks]
        if not chosen:
            raise ValueError(f"no source labels the class task (sources: {[s.name for s in sources]})")
        self.split = split
        self._of: dict[str, tuple[Any, str]] = {}
        for s in chosen:
            data = s.classes(split)
            for c in [] if data is None else data.class_names():
                self._of[f"{s.name}:{c}" if len(chosen) > 1 else c] = (data, c)
        if not self._of:
            raise ValueError(f"sources {[s.name for s in chosen]} have no categories in the {split!r} split")
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def class_names(self) -> list[str]:
        return sorted(self._of)

    def num_items(self, name: str) -> int:
        data, c = self._of[name]
        return data.num_items(c)

    def rgb(self, name: str, index: int) -> np.ndarray:
        key = (name, int(index))
        if key not in self._cache:
            data, c = self._of[name]
            self._cache[key] = data.rgb(c, int(index))
        return self._cache[key]


def task_domains(sources: Sequence[Source], task: str, split: str) -> list[tuple[Domain, float]]:
    """Every domain labelling `task` in `split`, with its sampling weight (its source's weight shared equally among
    that source's domains of the split)."""
    out = []
    for s in sources:
        if task in s.tasks:
            doms = s.domains(split)
            out += [(d, s.weight / len(doms)) for d in doms]
    return out
