"""The one sample type shared by the synthetic world and every real-dataset loader."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class Frame:
    """One camera frame with whatever ground truth its source provides (missing fields are None).

    rgb: uint8 (H, W, 3). depth: float32 (H, W) metric z-depth, NaN where invalid.
    normals: float32 (H, W, 3) camera-frame unit normals, NaN where invalid.
    vp_dirs: float32 (3, 3) canonical Manhattan directions (row 0 vertical), NaN rows where unknown.
    vp_pixels: float32 (3, 2) (u, v), NaN where at infinity or unknown. vp_at_infinity: bool (3,).
    K: float32 (3, 3) intrinsics. pose: float32 (4, 4) camera-to-world.
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None
    vp_dirs: np.ndarray | None = None
    vp_pixels: np.ndarray | None = None
    vp_at_infinity: np.ndarray | None = None
    category: int | None = None
    category_name: str | None = None
    K: np.ndarray | None = None
    pose: np.ndarray | None = None
    env: str | None = None

    def __post_init__(self) -> None:
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError(f"Frame.rgb must be uint8 (H, W, 3), got {self.rgb.dtype} {self.rgb.shape}")
        hw = self.rgb.shape[:2]
        for name, shape in (("depth", hw), ("normals", (*hw, 3)), ("vp_dirs", (3, 3)), ("vp_pixels", (3, 2)),
                            ("vp_at_infinity", (3,)), ("K", (3, 3)), ("pose", (4, 4))):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != tuple(shape):
                raise ValueError(f"Frame.{name} must have shape {shape}, got {value.shape}")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frame."""
        return self.rgb.shape[0], self.rgb.shape[1]

    def with_(self, **changes: object) -> Frame:
        """A copy with some fields replaced."""
        return replace(self, **changes)
