"""RGB-D sequences in the 7-Scenes and TUM RGB-D layouts, read frame by frame from disk.

7-Scenes (also the tsdf-fusion sample): `frame-NNNNNN.color.png|jpg`, `frame-NNNNNN.depth.png` (uint16 millimetres;
0 and 65535 = no measurement), optional `frame-NNNNNN.pose.txt` (4×4 camera-to-world, metres).
TUM RGB-D: `rgb.txt` and `depth.txt` (`timestamp path` lines, `#` comments), depth PNGs in 1/5000 m (0 = none),
optional `groundtruth.txt` (`timestamp tx ty tz qx qy qz qw`, camera-to-world); each colour image is paired with
the depth image and pose nearest in time (within `max_dt` seconds).
Both: intrinsics from `camera-intrinsics.txt` (3×3 K, whitespace separated) in the sequence folder or its parent,
or given. One sequence folder is one environment (`Frame.env`, default the folder name). Normals are not measured:
with `normals=True` each frame gets the pseudo ground truth of `mtml_core.data.pseudo_normals`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtml_core.data.loaders.common import read_png16, read_rgb
from mtml_core.data.pseudo_normals import pseudo_normals
from mtml_core.data.sample import Frame

INTRINSICS = "camera-intrinsics.txt"
INVALID_RAW = (0, 65535)  # raw 16-bit depth values that mean "no measurement"
SEVEN_SCENES_SCALE = 1000.0  # raw units per metre
TUM_SCALE = 5000.0
LAYOUTS = (f"7-Scenes (frame-NNNNNN.color.png|jpg + frame-NNNNNN.depth.png [+ .pose.txt], {INTRINSICS}) or "
           f"TUM RGB-D (rgb.txt + depth.txt [+ groundtruth.txt], {INTRINSICS} or K given)")
_FRAME = re.compile(r"frame-(\d+)\.depth\.png")


@dataclass(frozen=True)
class _Item:
    rgb: Path
    depth: Path
    pose: Path | np.ndarray | None
    name: str


def read_intrinsics(path: str | Path) -> np.ndarray:
    """A 3×3 K from a whitespace-separated text file; ValueError naming the file if it is not one."""
    path = Path(path)
    try:
        K = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as err:
        raise ValueError(f"malformed intrinsics {path}: expected a 3x3 matrix of numbers ({err})") from None
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 \
            or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f"malformed intrinsics {path}: expected a 3x3 pinhole K (fx, fy > 0, last row 0 0 1), "
                         f"got shape {K.shape}")
    return K.astype(np.float32)


def read_pose(path: str | Path) -> np.ndarray | None:
    """A 4×4 camera-to-world pose from a text file; None if it holds non-finite values (7-Scenes marks lost
    tracking so); ValueError naming the file if it is not a 4×4 matrix."""
    path = Path(path)
    try:
        T = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as err:
        raise ValueError(f"malformed pose {path}: expected a 4x4 matrix ({err})") from None
    if T.shape != (4, 4):
        raise ValueError(f"malformed pose {path}: expected a 4x4 matrix, got shape {T.shape}")
    return T.astype(np.float32) if np.isfinite(T).all() else None


def _quat_pose(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """4×4 from a translation and a unit quaternion (x, y, z, w)."""
    x, y, z, w = q / np.linalg.norm(q)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T.astype(np.float32)


def _table(path: Path, columns: int) -> list[list[str]]:
    """Rows of a TUM list file (comments skipped); ValueError naming the file and line if a row is short."""
    rows = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            row = line.split()
            if len(row) < columns:
                raise ValueError(f"malformed {path} line {no}: expected {columns} columns, got {line!r}")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} lists no entries")
    return rows


def _nearest(stamps: np.ndarray, t: float, max_dt: float) -> int | None:
    i = int(np.clip(np.searchsorted(stamps, t), 1, len(stamps) - 1)) if len(stamps) > 1 else 0
    if len(stamps) > 1 and abs(stamps[i - 1] - t) <= abs(stamps[i] - t):
        i -= 1
    return i if abs(stamps[i] - t) <= max_dt else None


def _seven_scenes(root: Path) -> list[_Item]:
    items = []
    for depth in sorted(root.glob("frame-*.depth.png")):
        m = _FRAME.fullmatch(depth.name)
        if m is None:
            continue
        stem = f"frame-{m.group(1)}"
        rgb = next((root / f"{stem}.color.{ext}" for ext in ("png", "jpg") if (root / f"{stem}.color.{ext}").exists()),
                   None)
        if rgb is None:
            raise FileNotFoundError(f"{root}: {depth.name} has no colour image {stem}.color.png or .jpg")
        pose = root / f"{stem}.pose.txt"
        items.append(_Item(rgb, depth, pose if pose.exists() else None, stem))
    return items


def _tum(root: Path, max_dt: float) -> list[_Item]:
    rgb_rows, depth_rows = _table(root / "rgb.txt", 2), _table(root / "depth.txt", 2)
    try:
        d_stamps = np.array([float(r[0]) for r in depth_rows])
        gt = _table(root / "groundtruth.txt", 8) if (root / "groundtruth.txt").exists() else []
        gt.sort(key=lambda r: float(r[0]))
        g_stamps = np.array([float(r[0]) for r in gt])
        g_values = np.array([[float(v) for v in r[1:8]] for r in gt])
        r_stamps = [float(r[0]) for r in rgb_rows]
    except ValueError as err:
        raise ValueError(f"malformed TUM list in {root}: timestamps and poses must be numbers ({err})") from None
    order = np.argsort(d_stamps)
    items = []
    for t, row in zip(r_stamps, rgb_rows, strict=True):
        j = _nearest(d_stamps[order], t, max_dt)
        if j is None:
            continue
        pose = None
        if len(g_stamps):
            k = _nearest(g_stamps, t, max_dt)
            pose = None if k is None else _quat_pose(g_values[k, :3], g_values[k, 3:])
        items.append(_Item(root / row[1], root / depth_rows[order[j]][1], pose, f"{t:.6f}"))
    if not items:
        raise ValueError(f"{root}: no colour image of rgb.txt has a depth image within {max_dt} s in depth.txt")
    return items


class RGBDSequence(Sequence):
    """One RGB-D sequence folder as a lazy list of Frames (rgb, metric depth with NaN invalid, K, pose, env):
    the folder is indexed on construction; frame i is read from disk when asked for."""

    def __init__(self, root: str | Path, K: np.ndarray | None = None, depth_scale: float | None = None,
                 env: str | None = None, normals: bool = False, max_dt: float = 0.02) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"RGB-D sequence folder not found: {self.root} (expected {LAYOUTS})")
        if (self.root / "rgb.txt").is_file() and (self.root / "depth.txt").is_file():
            self.layout, self.items = "tum", _tum(self.root, max_dt)
        else:
            self.layout, self.items = "7scenes", _seven_scenes(self.root)
            if not self.items:
                raise ValueError(f"no RGB-D frames in {self.root}: expected {LAYOUTS}")
        self.depth_scale = float(depth_scale or (TUM_SCALE if self.layout == "tum" else SEVEN_SCENES_SCALE))
        if self.depth_scale <= 0:
            raise ValueError(f"depth_scale must be > 0 (raw units per metre), got {depth_scale}")
        if K is None:
            found = [p for p in (self.root / INTRINSICS, self.root.parent / INTRINSICS) if p.is_file()]
            if not found:
                raise FileNotFoundError(f"no {INTRINSICS} in {self.root} or {self.root.parent}: expected a 3x3 K "
                                        f"there, or pass K")
            K = read_intrinsics(found[0])
        self.K = np.asarray(K, np.float32)
        if self.K.shape != (3, 3):
            raise ValueError(f"K must be 3x3, got shape {self.K.shape}")
        self.env = env or self.root.name
        self.normals = normals

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        """Frame i's name (7-Scenes: `frame-NNNNNN`; TUM: the colour timestamp)."""
        return self.items[i].name

    def depth(self, i: int) -> np.ndarray:
        """Frame i's depth: float32 (H, W) metres, NaN where the sensor has no measurement."""
        raw = read_png16(self.items[i].depth)
        out = raw.astype(np.float32) / np.float32(self.depth_scale)
        out[np.isin(raw, INVALID_RAW)] = np.nan
        return out

    def pose(self, i: int) -> np.ndarray | None:
        """Frame i's 4×4 camera-to-world pose, None where there is none."""
        pose = self.items[i].pose
        return read_pose(pose) if isinstance(pose, Path) else pose

    def frame(self, i: int) -> Frame:
        """Frame i read from disk (with pseudo ground-truth normals if the sequence was opened with normals=True)."""
        item = self.items[i]
        rgb, depth = read_rgb(item.rgb), self.depth(i)
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f"depth {depth.shape} and colour {rgb.shape[:2]} sizes differ: {item.depth}")
        normals = pseudo_normals(depth, self.K) if self.normals else None
        return Frame(rgb=rgb, depth=depth, normals=normals, K=self.K.copy(), pose=self.pose(i), env=self.env)

    def __getitem__(self, i: int | slice) -> Frame | list[Frame]:  # type: ignore[override]
        if isinstance(i, slice):
            return [self.frame(j) for j in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} of a {len(self)}-frame sequence")
        return self.frame(i % len(self))


def rgbd_sequences(root: str | Path, **kwargs: object) -> list[RGBDSequence]:
    """Every RGB-D sequence folder at or below `root` (e.g. one per 7-Scenes `seq-NN`), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"RGB-D data folder not found: {root} (expected folders in the {LAYOUTS} layout)")
    found = {p.parent for p in root.rglob("frame-*.depth.png")} | {p.parent for p in root.rglob("depth.txt")
                                                                 if (p.parent / "rgb.txt").is_file()}
    if not found:
        raise ValueError(f"no RGB-D sequence under {root}: expected folders in the {LAYOUTS} layout")
    return [RGBDSequence(p, **kwargs) for p in sorted(found)]  # type: ignore[arg-type]
