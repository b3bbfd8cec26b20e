"""bag_camera replays a rosbag2's images to a subscriber in another process, pixel for pixel."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import RosSession, digest, load_record
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

pytestmark = pytest.mark.ros

EUROC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bags" / "euroc_cam_mcap"
TS = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"


def write_sqlite_bag(path, n=5, h=24, w=32):
    """A sqlite3 bag of n random rgb8 frames on /cam/image; returns {stamp_ns: data sha256}."""
    rng = np.random.default_rng(1)
    Image, Header, Time = (TS.types[t] for t in (IMAGE, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    expected = {}
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/cam/image", IMAGE, typestore=TS)
        for i in range(n):
            data = rng.integers(0, 256, h * w * 3, dtype=np.uint8)
            stamp = 1_700_000_000_000_000_000 + i * 50_000_000
            msg = Image(header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam"),
                        height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=data)
            writer.write(conn, stamp, TS.serialize_cdr(msg, IMAGE))
            expected[stamp] = hashlib.sha256(data.tobytes()).hexdigest()
    return expected


def bag_frames(path, topic):
    """{stamp_ns: deserialised rosbags Image} of one topic."""
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        msgs = (TS.deserialize_cdr(raw, IMAGE) for _, _, raw in reader.messages(connections=conns))
        return {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in msgs}


def stamp_ns(rec):
    return rec["header"]["stamp"]["sec"] * 10**9 + rec["header"]["stamp"]["nanosec"]


def test_sqlite3_bag_frames_arrive_unchanged_and_ctrl_c_exits_cleanly(tmp_path):
    bag = tmp_path / "bag"
    expected = write_sqlite_bag(bag)
    with RosSession(tmp_path) as ros:
        rec, out = ros.record("/camera/image", IMAGE, count=2 * len(expected), timeout=20)
        cam = ros.script("bag_camera", "--ros-args", "-p", f"bag:={bag}", "-p", "rate:=30.0",
                         "-p", "loop:=true", "-r", "image:=/camera/image")
        assert ros.wait_for_topic("/camera/image", timeout=20), cam.log()
        assert rec.wait(30) == 0, rec.log() + cam.log()
        assert cam.stop() == 0, cam.log()
    got = load_record(out)
    assert {stamp_ns(r) for r in got} == set(expected), "every bag frame should arrive"
    for r in got:
        assert (r["encoding"], r["height"], r["width"], r["step"]) == ("rgb8", 24, 32, 96)
        assert r["data"]["sha256"] == expected[stamp_ns(r)]
        assert r["header"]["frame_id"] == "cam"
    assert "Traceback" not in cam.log()


def test_ends_by_itself_without_loop_and_rejects_bad_parameters(tmp_path):
    bag = tmp_path / "bag"
    write_sqlite_bag(bag, n=3)
    with RosSession(tmp_path) as ros:
        cam = ros.script("bag_camera", "--ros-args", "-p", f"bag:={bag}", "-p", "rate:=50.0")
        assert cam.wait(20) == 0, cam.log()
        assert "replaying 3 frames of /cam/image" in cam.log()
        bad = ros.module("mtml.bag_camera", "--ros-args", "-p", f"bag:={bag}", "-p", "topic:=/nope")
        assert bad.wait(20) == 2
        assert "no sensor_msgs/msg/Image topic '/nope'" in bad.log() and "/cam/image" in bad.log()


@pytest.mark.skipif(not EUROC.is_dir(), reason="real-data bag ../shared/data/bags/euroc_cam_mcap is absent")
def test_euroc_mcap_frames_equal_the_bag(tmp_path):
    frames = bag_frames(EUROC, "/cam0/image_raw")
    with RosSession(tmp_path) as ros:
        rec, out = ros.record("/image", IMAGE, count=6, timeout=20)
        cam = ros.script("bag_camera", "--ros-args", "-p", f"bag:={EUROC}", "-p", "topic:=/cam0/image_raw",
                         "-p", "rate:=20.0", "-p", "loop:=true")
        assert rec.wait(30) == 0, rec.log() + cam.log()
    got = load_record(out)
    assert len(got) == 6
    for r in got:
        ref = frames[stamp_ns(r)]
        assert (r["encoding"], r["height"], r["width"], r["step"]) == (ref.encoding, 480, 752, ref.step)
        assert r["data"] == digest(ref.data.tobytes())
