"""sensor_msgs/Image <-> numpy conversion (mtml.image_conv): values, row padding, strict validation."""

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mtml import image_conv as ic

RNG = np.random.default_rng(0)


def make_msg(encoding, rows, step=None, pad_byte=0xAB, bigendian=False):
    """Hand-built Image from an (H, W[, C]) array, rows padded with `pad_byte` up to `step` bytes."""
    rows = np.ascontiguousarray(rows)
    h, w = rows.shape[:2]
    raw = rows.reshape(h, -1).view(np.uint8)
    step = raw.shape[1] if step is None else step
    buf = np.full((h, step), pad_byte, dtype=np.uint8)
    buf[:, : raw.shape[1]] = raw
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=step,
                 data=buf.tobytes())


def test_rgb8_roundtrip_keeps_pixels_and_header():
    rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = ic.rgb_to_msg(rgb, header)
    assert (msg.encoding, msg.step, len(msg.data)) == ("rgb8", 64 * 3, 48 * 64 * 3)
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(ic.rgb_from_msg(msg), rgb)


def test_bgr8_and_mono8_become_rgb():
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = ic.rgb_from_msg(make_msg("bgr8", rgb[..., ::-1]))
    np.testing.assert_array_equal(out, rgb)
    assert out.flags.c_contiguous
    gray = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    out = ic.rgb_from_msg(make_msg("mono8", gray))
    assert out.shape == (5, 7, 3) and out.flags.c_contiguous
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_color_row_padding_is_skipped(encoding):
    ch = 1 if encoding == "mono8" else 3
    img = RNG.integers(0, 256, (6, 9, ch), dtype=np.uint8)
    msg = make_msg(encoding, img, step=9 * ch + 5)
    out = ic.rgb_from_msg(msg)
    expect = {"rgb8": img, "bgr8": img[..., ::-1], "mono8": np.repeat(img, 3, axis=2)}[encoding]
    np.testing.assert_array_equal(out, expect)


def test_16uc1_millimetres_to_metres_zero_is_nan():
    mm = np.array([[0, 1, 1500], [65535, 250, 0]], dtype="<u2")
    depth = ic.depth_from_msg(make_msg("16UC1", mm, step=2 * 3 + 2))
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(depth), mm == 0)
    np.testing.assert_allclose(depth[mm > 0], mm[mm > 0] / 1000.0, rtol=1e-7)


def test_32fc1_depth_invalid_values_become_nan():
    d = np.array([[1.25, 0.0, -2.0], [np.inf, np.nan, 7.5]], dtype="<f4")
    depth = ic.depth_from_msg(make_msg("32FC1", d, step=3 * 4 + 8))
    np.testing.assert_array_equal(depth[[0, 1], [0, 2]], [1.25, 7.5])
    assert np.isnan(depth[[0, 0, 1, 1], [1, 2, 0, 1]]).all()


def test_32fc1_and_32fc3_roundtrip():
    depth = RNG.uniform(0.5, 9.0, (4, 5)).astype(np.float32)
    depth[1, 2] = np.nan
    msg = ic.depth_to_msg(depth)
    assert (msg.encoding, msg.step, msg.is_bigendian) == ("32FC1", 20, 0)
    np.testing.assert_array_equal(ic.depth_from_msg(msg), depth)
    n = RNG.normal(size=(4, 5, 3))
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    msg = ic.normals_to_msg(n)  # float64 in: encoded as float32
    assert (msg.encoding, msg.step) == ("32FC3", 5 * 12)
    np.testing.assert_array_equal(ic.normals_from_msg(msg), n.astype(np.float32))
    padded = make_msg("32FC3", n.astype("<f4"), step=5 * 12 + 4)
    np.testing.assert_array_equal(ic.normals_from_msg(padded), n.astype(np.float32))


def _good(encoding="rgb8"):
    return make_msg(encoding, np.zeros((4, 6, 3 if encoding in ("rgb8", "bgr8", "32FC3") else 1),
                                       dtype=ic.ENCODINGS[encoding][0]))


@pytest.mark.parametrize(
    ("mutate", "decode", "match"),
    [
        (lambda m: setattr(m, "encoding", "rgba8"), ic.rgb_from_msg, "unsupported image encoding 'rgba8'"),
        (lambda m: setattr(m, "encoding", "32FC1"), ic.rgb_from_msg, "unsupported image encoding '32FC1'"),
        (lambda m: None, ic.depth_from_msg, "unsupported image encoding 'rgb8'"),
        (lambda m: setattr(m, "step", 17), ic.rgb_from_msg, "wrong step 17"),
        (lambda m: (setattr(m, "step", 18 + 1025), setattr(m, "data", bytes(4 * 1043))), ic.rgb_from_msg,
         "padding beyond 1024 refused"),
        (lambda m: setattr(m, "data", bytes(m.data[:-3])), ic.rgb_from_msg, "truncated"),
        (lambda m: setattr(m, "data", bytes(m.data) + b"\0"), ic.rgb_from_msg, "expected step\\*height"),
        (lambda m: setattr(m, "height", 0), ic.rgb_from_msg, "zero-size"),
        (lambda m: setattr(m, "width", 0), ic.rgb_from_msg, "zero-size"),
    ],
)
def test_bad_color_messages_raise(mutate, decode, match):
    msg = _good()
    mutate(msg)
    with pytest.raises(ValueError, match=match):
        decode(msg)


def test_depth_labels_are_checked_whole_without_decoding():
    ic.check_depth_msg(_good("32FC1"), 24)
    ic.check_depth_msg(_good("16UC1"))
    bad = _good("32FC1")
    bad.data = bytes(bad.data) + bytes(4096)  # a label whose data is larger than its size says
    with pytest.raises(ValueError, match="expected step\\*height"):
        ic.check_depth_msg(bad)
    with pytest.raises(ValueError, match="more than max_image_pixels = 23"):
        ic.check_depth_msg(_good("32FC1"), 23)
    with pytest.raises(ValueError, match="unsupported image encoding 'rgb8'"):
        ic.check_depth_msg(_good("rgb8"))


def test_bad_depth_messages_raise():
    msg = _good("32FC1")
    msg.is_bigendian = 1
    with pytest.raises(ValueError, match="big-endian 32FC1"):
        ic.depth_from_msg(msg)
    msg = _good("16UC1")
    msg.is_bigendian = 1
    with pytest.raises(ValueError, match="big-endian 16UC1"):
        ic.depth_from_msg(msg)
    msg = make_msg("32FC1", np.zeros((4, 6), "<f4"), step=6 * 4 + 2)
    with pytest.raises(ValueError, match="not a multiple"):
        ic.depth_from_msg(msg)
    with pytest.raises(ValueError, match="unsupported image encoding '32FC1'"):
        ic.normals_from_msg(_good("32FC1"))


def test_mono8_ignores_endianness_flag():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = ic.rgb_from_msg(make_msg("mono8", gray, bigendian=True))
    np.testing.assert_array_equal(out[..., 1], gray)


def test_encode_rejects_bad_arrays():
    with pytest.raises(ValueError, match=r"shape \(H, W\)"):
        ic.depth_to_msg(np.zeros((4, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        ic.normals_to_msg(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="needs uint8"):
        ic.rgb_to_msg(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="zero-size"):
        ic.depth_to_msg(np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="cannot encode 'bgr8'"):
        ic.array_to_msg(np.zeros((4, 5, 3), np.uint8), "bgr8")
