"""Exact ground truth of the synthetic world: depth on surfaces, normals, vanishing points."""

import numpy as np
import pytest

from mtml_core.data.categories import FAMILIES
from mtml_core.data.geometry import backproject
from mtml_core.data.spec import builtin_envs, category_spec
from mtml_core.data.synth import render_scene, sample_scene

CASES = [(category_spec(f"{fam}/brick"), seed) for fam in FAMILIES for seed in (0, 1)]
CASES += [(spec, 3) for spec in builtin_envs("test")]


def _world_points(frame):
    pts = backproject(frame.depth, frame.K)
    pose = frame.pose.astype(np.float64)
    return pts @ pose[:3, :3].T + pose[:3, 3]


def _surface_distance(p, layout):
    """Distance of points (n, 3) to the nearest surface (container bounds or box boundaries)."""
    best = np.full(len(p), np.inf)
    for k in range(3):
        for bound in (layout.lo[k], layout.hi[k]):
            if np.isfinite(bound):
                best = np.minimum(best, np.abs(p[:, k] - bound))
    for lo, hi in layout.boxes:
        outside = np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0), axis=1)
        inside = np.minimum(p - lo, hi - p).min(1)
        best = np.minimum(best, np.where(outside > 0, outside, np.abs(inside)))
    return best


def _free(p, layout):
    """True where points are in free space: inside the container and outside every box."""
    ok = np.all((p > layout.lo) & (p < layout.hi), axis=1)
    for lo, hi in layout.boxes:
        ok &= ~np.all((p > lo) & (p < hi), axis=1)
    return ok


@pytest.mark.parametrize("spec,seed", CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_backprojected_depth_lies_on_the_hit_surface(spec, seed):
    scene = sample_scene(spec, seed, (48, 64))
    frame = render_scene(scene)
    valid = np.isfinite(frame.depth)
    assert valid.mean() > 0.3
    p = _world_points(frame)[valid]
    assert _surface_distance(p, scene.layout).max() <= 1e-4
    # the rendered normal points into free space, its opposite into a solid (or out of the container)
    n = frame.normals[valid].astype(np.float64) @ frame.pose[:3, :3].T.astype(np.float64)
    assert _free(p + 1e-3 * n, scene.layout).mean() > 0.999
    assert _free(p - 1e-3 * n, scene.layout).mean() < 0.001


@pytest.mark.parametrize("spec,seed", CASES[::2], ids=lambda x: getattr(x, "name", str(x)))
def test_finite_difference_normals_match_rendered_normals(spec, seed):
    frame = render_scene(sample_scene(spec, seed, (96, 128)))
    pts = backproject(frame.depth, frame.K)
    dx = pts[1:-1, 2:] - pts[1:-1, :-2]
    dy = pts[2:, 1:-1] - pts[:-2, 1:-1]
    fd = np.cross(dx, dy)
    fd /= np.linalg.norm(fd, axis=-1, keepdims=True)
    centre = pts[1:-1, 1:-1]
    fd *= -np.sign(np.sum(fd * centre, -1, keepdims=True))  # face the camera
    rendered = frame.normals[1:-1, 1:-1].astype(np.float64)
    # away from edges: all 3x3 neighbours share the rendered normal and lie on the centre's plane
    same = np.ones(rendered.shape[:2], bool)
    h, w = frame.depth.shape
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            nb = pts[1 + dr:h - 1 + dr, 1 + dc:w - 1 + dc]
            nn = frame.normals[1 + dr:h - 1 + dr, 1 + dc:w - 1 + dc]
            same &= np.all(nn == frame.normals[1:-1, 1:-1], -1)
            same &= np.abs(np.sum((nb - centre) * rendered, -1)) < 1e-3 * centre[..., 2]
    same &= np.isfinite(fd).all(-1)
    assert same.mean() > 0.3
    cos = np.clip(np.sum(fd[same] * rendered[same], -1), -1, 1)
    assert np.degrees(np.median(np.arccos(cos))) <= 2.0
    assert np.allclose(np.linalg.norm(frame.normals[np.isfinite(frame.depth)], axis=-1), 1, atol=1e-5)


def _box_edges(boxes):
    """World-axis-aligned box edges as (axis, start, end) triples."""
    for lo, hi in boxes:
        for a in range(3):
            b, c = [k for k in range(3) if k != a]
            for vb in (lo[b], hi[b]):
                for vc in (lo[c], hi[c]):
                    p, q = np.empty(3), np.empty(3)
                    p[a], q[a] = lo[a], hi[a]
                    p[b] = q[b] = vb
                    p[c] = q[c] = vc
                    yield a, p, q


@pytest.mark.parametrize("spec,seed", CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_projected_world_axis_edges_pass_through_vanishing_points(spec, seed):
    scene = sample_scene(spec, seed, (96, 128))
    frame = render_scene(scene)
    R, o, K = frame.pose[:3, :3].astype(np.float64), frame.pose[:3, 3].astype(np.float64), frame.K.astype(np.float64)
    rows = {}  # world axis -> VP row that each of its edges passes through
    checked = 0
    for axis, p, q in _box_edges(scene.layout.boxes):
        pc, qc = (p - o) @ R, (q - o) @ R
        if min(pc[2], qc[2]) < 0.2:
            continue
        a, b = (K @ pc) / pc[2], (K @ qc) / qc[2]
        if np.linalg.norm(a[:2] - b[:2]) < 5 or np.abs(np.r_[a[:2], b[:2]]).max() > 2000:
            continue
        line = np.cross(a, b)
        # Gaussian-sphere incidence: the VP direction lies in the plane through the edge and the camera
        plane = K.T @ line
        err = np.abs(frame.vp_dirs.astype(np.float64) @ plane) / np.linalg.norm(plane)
        row = int(np.argmin(err))
        assert err[row] < 1e-4, (axis, err)
        assert rows.setdefault(axis, row) == row
        if not frame.vp_at_infinity[row]:  # the pixel VP lies on the image line too
            vp = np.r_[frame.vp_pixels[row], 1.0]
            mid = (a + b) / 2
            dist = abs(line @ vp) / np.linalg.norm(line[:2])
            assert dist <= 1e-3 * max(1.0, np.linalg.norm(vp[:2] - mid[:2]))
        checked += 1
    assert checked >= 4
    assert rows.get(2, 0) == 0  # vertical edges -> row 0
    assert len(set(rows.values())) == len(rows)  # different axes -> different VPs


def test_vanishing_directions_are_canonical_orthonormal_world_axes():
    for spec, seed in CASES:
        frame = render_scene(sample_scene(spec, seed, (24, 32)))
        v = frame.vp_dirs.astype(np.float64)
        assert np.allclose(v @ v.T, np.eye(3), atol=1e-5)
        assert v[0, 1] <= 0 and v[1, 2] >= v[2, 2] >= 0
        up = frame.pose[:3, :3].astype(np.float64).T @ np.array([0, 0, 1.0])
        assert np.allclose(v[0], up, atol=1e-5)  # world z seen from the camera
        finite = ~frame.vp_at_infinity
        proj = (frame.K.astype(np.float64) @ v[finite].T).T
        assert np.allclose(proj[:, :2] / proj[:, 2:], frame.vp_pixels[finite], rtol=1e-4, atol=1e-2)
