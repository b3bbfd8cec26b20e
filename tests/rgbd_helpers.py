"""A 7-Scenes-layout RGB-D sequence on disk for tests (colour PNG, 16-bit depth in mm, intrinsics)."""

from pathlib import Path

import cv2
import numpy as np

K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])


def write_sequence(root: Path, n: int, depth_mm: int = 1000) -> None:
    """``n`` 24×32 frames: colour value i, a flat depth of ``depth_mm`` + i millimetres (frame i)."""
    root.mkdir(parents=True)
    np.savetxt(root / "camera-intrinsics.txt", K)
    for i in range(n):
        assert cv2.imwrite(str(root / f"frame-{i:06d}.color.png"), np.full((24, 32, 3), i, np.uint8))
        assert cv2.imwrite(str(root / f"frame-{i:06d}.depth.png"), np.full((24, 32), depth_mm + i, np.uint16))
