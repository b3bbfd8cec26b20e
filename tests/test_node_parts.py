"""The node's parts without a running node: label collection and time matching (mtml.collection), the warning
throttle (mtml.throttle), frame size bounds and compressed input (mtml.image_conv), camera_info and VP pixels in
float32 (mtml.messages, in a child process: it imports mtml_interfaces)."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from ros_helpers import child_env, next_domain_id
from sensor_msgs.msg import CompressedImage, Image

from mtml import collection as col
from mtml import image_conv as ic
from mtml.throttle import KINDS, Throttle, cap, safe

SEC = 1_000_000_000


def test_stamped_store_matches_the_nearest_stamp_within_the_tolerance_and_keeps_a_bounded_history():
    store = col.StampedStore(size=3)
    for i in range(5):
        store.add(i * SEC, f"v{i}")
    assert len(store) == 3 and store.latest() == "v4"
    assert store.match(3 * SEC + 4_000_000, 5e6) == "v3"
    assert store.match(3 * SEC + 6_000_000, 5e6) is None
    assert store.match(0, 10 * SEC) == "v2"  # v0, v1 were dropped
    store.clear()
    assert store.match(4 * SEC, 1e9) is None and store.latest() is None


class Builds:
    """A stand-in for the node's frame builder: records calls; raises for frames marked bad."""

    def __init__(self):
        self.calls = []

    def __call__(self, env, rgb, depth, K, class_name, vp):
        if rgb[0, 0, 0] == 255:
            raise ValueError("bad frame")
        self.calls.append((env, int(rgb[0, 0, 0]), depth, None if K is None else float(K[0, 0]), class_name))
        return len(self.calls)


def run_until_idle(c, needs, now, tol=0.005, rounds=50):
    """Step the collector until the worker has nothing in flight; returns the events."""
    events = []
    for _ in range(rounds):
        events += c.step(needs, tol, now)
        if not c.jobs:
            break
        time.sleep(0.01)
    return events


def frame(value, hw=(4, 6)):
    return np.full((*hw, 3), value, np.uint8)


def test_collector_matches_labels_by_stamp_builds_in_the_worker_and_stops_at_shots():
    builds = Builds()
    with ThreadPoolExecutor(1) as worker:
        c = col.Collector(builds, worker)
        c.add_depth(1 * SEC, "ignored")  # not collecting: raw depth labels are not kept
        assert len(c.depth) == 0
        c.infos.add(1 * SEC, (np.eye(3) * 7, (4, 6)))
        c.start("lab", "room", None, shots=2, rate=0.0)
        needs = col.Needs(depth=True, k=True)
        c.offer(1 * SEC, 0.0, frame(1))
        assert run_until_idle(c, needs, now=0.1) == [] and builds.calls == []  # waits for its depth label
        c.add_depth(1 * SEC + 2_000_000, "depth1")
        assert run_until_idle(c, needs, now=0.2) == []
        assert builds.calls == [("lab", 1, "depth1", 7.0, "room")]
        assert c.state() == "collecting lab 1/2"
        c.offer(2 * SEC, 0.3, frame(2))
        c.infos.add(2 * SEC, (np.eye(3), (4, 6)))
        c.add_depth(2 * SEC, "depth2")
        events = run_until_idle(c, needs, now=0.4)
        assert events == [("info", "collected 2 frames for lab; collection stopped")]
        assert c.current is None and c.finished is not None and not c.active
        assert len(c.depth) == 0  # labels dropped once the collection ends
        assert c.stop("lab") is c.finished  # stop after it stopped by itself: the finished collection
        assert c.stop("other") is None


def test_collector_reasons_for_missing_labels_wrong_sizes_and_rejected_frames_and_the_rate_limit():
    builds = Builds()
    with ThreadPoolExecutor(1) as worker:
        c = col.Collector(builds, worker)
        coll = c.start("lab", None, np.eye(3, dtype=np.float32), shots=10, rate=2.0)
        assert coll.offer(0, 0.0, frame(1)) and not coll.offer(SEC // 4, 0.0, frame(2))  # 2 Hz at most
        events = run_until_idle(c, col.Needs(depth=True), now=col.PENDING_SECONDS + 0.5)
        assert events == [("warn", "collect lab: no depth_label within 0.005 s of the image stamp: frame not "
                                   "collected")]
        c.infos.add(5 * SEC, (np.eye(3), (8, 8)))
        c.offer(5 * SEC, 0.0, frame(3))
        c.add_depth(5 * SEC, "d")
        events = run_until_idle(c, col.Needs(depth=True, k=True), now=0.1)
        assert events == [("warn", "collect lab: camera_info is for 8x8 images but the image is 6x4: frame not "
                                   "collected")]
        c.offer(6 * SEC, 0.0, frame(255))
        events = run_until_idle(c, col.Needs(), now=0.1)
        assert events == [("warn", "collect lab: frame rejected: bad frame")]
        assert coll.errors == 3 and coll.last_error == "frame rejected: bad frame"
        assert c.stop("lab") is coll and c.current is None


def test_collector_hands_the_worker_at_most_two_frames_and_never_more_than_the_shots_left():
    started = []

    def slow(env, rgb, *labels):
        started.append(int(rgb[0, 0, 0]))
        time.sleep(0.2)
        return len(started)

    with ThreadPoolExecutor(1) as worker:
        c = col.Collector(slow, worker)
        coll = c.start("lab", "room", None, shots=3, rate=0.0)
        for i in range(6):
            coll.offer(i * SEC, 0.0, frame(i + 1))
        c.step(col.Needs(), 0.005, 0.0)
        assert len(c.jobs) == col.MAX_IN_FLIGHT and len(coll.pending) == 4
        deadline = time.monotonic() + 5
        while c.current is not None and time.monotonic() < deadline:
            c.step(col.Needs(), 0.005, 0.0)
            time.sleep(0.02)
        assert started == [1, 2, 3] and coll.added == 3


def test_throttle_keys_by_kind_with_bounded_memory_and_counts_what_it_suppressed():
    lines, now = [], [0.0]
    t = Throttle(lines.append, period=5.0, clock=lambda: now[0])
    for i in range(10_000):
        t.warn("image", f"image rejected: unsupported image encoding 'enc{i}'")
    assert lines == ["image rejected: unsupported image encoding 'enc0'"]
    assert len(t.last) == 1 and set(t.suppressed) == set(KINDS) and t.total["image"] == 10_000
    assert t.warn("camera_info", "bad K")  # another kind is not held back
    now[0] = 5.0
    assert t.warn("image", "again")
    assert lines[-1] == "again (9999 more image problems since the last one logged)"
    assert t.recent(1.0) == ["image"]
    with pytest.raises(KeyError):
        t.warn("free text", "x")


def test_untrusted_strings_are_quoted_escaped_and_capped():
    assert safe("a\nb") == "'a\\nb'"
    long = safe("x" * 5000)
    assert len(long) < 260 and long.endswith("(5000 characters)")
    assert cap("bad\x1b[31mred") == "bad\\x1b[31mred"
    assert len(cap("y" * 10_000)) == 401


def test_frames_beyond_max_pixels_are_rejected_before_conversion():
    huge = Image(height=2160, width=3840, encoding="rgb8", step=3840 * 3)  # no data at all: size checked first
    with pytest.raises(ValueError, match="3840x2160 = 8294400 pixels, more than max_image_pixels = 2073600"):
        ic.rgb_from_msg(huge, 1920 * 1080)
    with pytest.raises(ValueError, match="more than max_image_pixels"):
        ic.depth_from_msg(Image(height=2000, width=2000, encoding="32FC1", step=8000), 1920 * 1080)
    long_enc = Image(height=1, width=1, encoding="e" * 10_000, step=3, data=b"abc")
    with pytest.raises(ValueError) as exc:
        ic.rgb_from_msg(long_enc)
    assert len(str(exc.value)) < 200


def compressed(data, fmt="jpeg"):
    return CompressedImage(format=fmt, data=bytes(data))


def test_compressed_frames_decode_to_rgb_and_bad_or_oversized_data_is_rejected_with_a_reason():
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200  # red
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, rgb[..., ::-1])
        out = ic.rgb_from_compressed(compressed(buf.tobytes()), 1920 * 1080)
        assert out.shape == (48, 64, 3) and abs(int(out[..., 0].mean()) - 200) <= 3 and out[..., 2].max() <= 3
        assert ic.compressed_size(buf.tobytes()) == (48, 64)
    ok, png = cv2.imencode(".png", rgb)
    bomb = bytearray(png.tobytes())
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2  # the header claims 100000x100000: rejected unread
    with pytest.raises(ValueError, match="more than max_image_pixels"):
        ic.rgb_from_compressed(compressed(bomb), 1920 * 1080)
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        ic.rgb_from_compressed(compressed(b"GIF89a" + bytes(100)))
    with pytest.raises(ValueError, match="neither JPEG nor PNG .*nothing"):
        ic.rgb_from_compressed(compressed(b""))
    ok, jpg = cv2.imencode(".jpg", rgb)
    with pytest.raises(ValueError, match="could not be decoded"):
        ic.rgb_from_compressed(compressed(jpg.tobytes()[:300]))
    with pytest.raises(ValueError, match="JPEG without a readable frame header"):
        ic.rgb_from_compressed(compressed(b"\xff\xd8" + bytes(50)))
    with pytest.raises(ValueError, match="more than a max_image_pixels frame can need"):
        ic.rgb_from_compressed(compressed(bytes(100_000)), 100)


MESSAGES = """
import numpy as np
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from mtml import messages as m
from mtml_core.data.geometry import intrinsics, scale_intrinsics

K = intrinsics(60.0, (60, 80)).astype(np.float64)
def info(entries=None):
    k = K.copy()
    for (i, j), v in (entries or {}).items():
        k[i, j] = v
    return CameraInfo(height=60, width=80, k=k.ravel().tolist())

for bad in ({(0, 0): 1e308, (1, 1): 1e308}, {(1, 1): 1e300}, {(0, 2): 1e308}, {(0, 1): 1e308},
            {(0, 0): 1e39}, {(0, 0): float("nan")}, {(1, 2): -float("inf")}, {(0, 0): 2e6}, {(2, 2): 2.0}):
    try:
        m.k_from_camera_info(info(bad))
        raise AssertionError(f"accepted {bad}")
    except ValueError as exc:
        assert "not a pinhole matrix" in str(exc), exc
k32, hw = m.k_from_camera_info(info())
assert k32.dtype == np.float32 and hw == (60, 80)
# a K at the limit and a direction nearly in the image plane: pixels finite, never inf
extreme = np.array([[1e6, 0, 1e6], [0, 1e6, 1e6], [0, 0, 1]], np.float32)
vp = m.vp_msg(np.array([[0, -1, 2e-6], [1, 0, 1e-5], [0, 0, 1.0]]), Header(), extreme)
assert not np.isinf(vp.pixels).any(), vp.pixels
uv, inf = m.finite_pixels(np.array([[3e38, 0, 0], [0, 3e38, 0], [0, 0, 1]]), np.array([[1, 1, 1e-5]] * 3))
assert np.isnan(uv).all() and inf.all()  # beyond float32: at infinity, NaN
picture = m.panel(np.zeros((60, 80, 3), np.uint8), None, None, np.eye(3), extreme, None, (), height=60)
assert picture.shape == (60, 400, 3)
out = m.output_camera_info(K, (60, 80), (48, 64), Header(frame_id="cam"))
assert (out.height, out.width, out.header.frame_id) == (48, 64, "cam")
assert np.allclose(np.reshape(out.k, (3, 3)), scale_intrinsics(K, (60, 80), (48, 64)))
assert np.allclose(np.reshape(out.p, (3, 4))[:, :3], np.reshape(out.k, (3, 3)))
assert m.scene_msg(np.array([0.3, 0.7]), (1, 2), Header()).labels == ["1", "2"]
print("ok")
"""


def test_camera_info_is_checked_in_float32_and_vp_pixels_are_never_infinite():
    r = subprocess.run([sys.executable, "-c", MESSAGES], env=child_env(next_domain_id(), True), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
