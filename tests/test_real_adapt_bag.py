"""bench/real_adapt.py's rosbag2: rgb8, 16UC1 millimetres (65535 -> 0), camera_info, one header per frame."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from mtml_core.data.loaders.rgbd_sequence import RGBDSequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import real_adapt  # noqa: E402

TS = get_typestore(Stores.ROS2_JAZZY)


def test_bag_holds_every_frame_once_per_topic_under_one_header(tmp_path):
    root = tmp_path / "seq"
    root.mkdir()
    np.savetxt(root / "camera-intrinsics.txt", [[50, 0, 16], [0, 50, 12], [0, 0, 1]])
    for i in range(3):
        rgb = np.zeros((24, 32, 3), np.uint8)
        rgb[..., 0] = 10 * i  # red channel, RGB order
        assert cv2.imwrite(str(root / f"frame-{2 * i:06d}.color.png"), rgb[..., ::-1])
        depth = np.full((24, 32), 1200 + i, np.uint16)
        depth[0, 0], depth[0, 1] = 0, 65535
        assert cv2.imwrite(str(root / f"frame-{2 * i:06d}.depth.png"), depth)
    seq = RGBDSequence(root)
    real_adapt.write_bag(seq, [0, 2], tmp_path / "bag")
    with Reader(tmp_path / "bag") as reader:
        assert list((tmp_path / "bag").glob("*.mcap"))
        msgs = {}
        for conn, t, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((t, TS.deserialize_cdr(raw, conn.msgtype)))
    assert set(msgs) == set(real_adapt.TOPICS.values())
    stamps = [real_adapt.stamp_ns(seq, i) for i in (0, 2)]
    assert stamps[1] - stamps[0] == pytest.approx(4 / 30 * 1e9, abs=1)  # frame-000004 at 30 Hz
    for topic, got in msgs.items():
        assert [t for t, _ in got] == stamps
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in got] == stamps, topic
    image, depth, info = (msgs[real_adapt.TOPICS[k]][1][1] for k in ("image", "depth", "info"))
    assert image.encoding == "rgb8" and image.data.reshape(24, 32, 3)[5, 5].tolist() == [20, 0, 0]
    d = depth.data.view("<u2").reshape(24, 32)
    assert depth.encoding == "16UC1" and d[5, 5] == 1202 and d[0, 0] == 0 and d[0, 1] == 0  # REP 118: 0 invalid
    assert info.k.reshape(3, 3)[0, 0] == 50 and (info.height, info.width) == (24, 32)


def test_support_and_evaluation_frames_are_far_apart():
    support, evaluation = real_adapt.pick_frames(500, 10)
    assert len(support) == 10 and support[0] == 0 and support[-1] < real_adapt.SUPPORT_SPAN
    assert evaluation[0] - support[-1] >= 200 and evaluation[-1] < 500
    with pytest.raises(ValueError, match="shots"):
        real_adapt.pick_frames(500, 0)
    with pytest.raises(ValueError, match="none is 200 frames after"):
        real_adapt.pick_frames(120, 10)
