"""Share of 640x480 rgb8 frames at 30 Hz that a best-effort (SensorData QoS) subscriber in another
process receives, with Fast DDS's default transports and with the package's 16 MiB shared-memory profile.

    .venv/bin/python bench/dds_transport.py [--frames 300] [--rate 30]

Prints a table and writes bench/results/dds_transport.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mtml.ros_env import FASTDDS_PROFILE, transport_env
from mtml_core.backends.manifest import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "dds_transport.json"
H, W = 480, 640


def publisher(frames: int, rate: float) -> None:
    """Wait for a subscriber, then publish `frames` rgb8 frames at `rate` Hz (index in frame_id)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mtml.image_conv import rgb_to_msg

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    while pub.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(1.0)  # let discovery settle on both sides
    msg = rgb_to_msg(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8))
    start = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        msg.header.frame_id = str(i)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
    node.destroy_node()
    rclpy.try_shutdown()


def subscriber(out: Path, budget: float) -> None:
    """Count distinct frames and their latency until 2 s pass without one (or `budget` s in all)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_viewer")
    seen: dict[int, float] = {}

    def on_image(msg: Image) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if len(msg.data) == H * W * 3:
            seen[int(msg.header.frame_id)] = (now - stamp) * 1e-6

    node.create_subscription(Image, "image", on_image, qos_profile_sensor_data)
    deadline, last = time.monotonic() + budget, None
    while time.monotonic() < deadline:
        n = len(seen)
        rclpy.spin_once(node, timeout_sec=0.1)
        if len(seen) != n:
            last = time.monotonic()
        elif last is not None and time.monotonic() - last > 2.0:
            break
    out.write_text(json.dumps({"received": len(seen), "latency_ms": list(seen.values())}))
    node.destroy_node()
    rclpy.try_shutdown()


def run(setting: str, shm: bool, domain_id: int, frames: int, rate: float, tmp: Path) -> dict:
    """One publisher/subscriber pair in separate processes; returns the measured figures."""
    env = transport_env(domain_id, shm)
    out = tmp / f"dds_transport_{domain_id}.json"
    me = [sys.executable, __file__]
    budget = frames / rate + 15
    sub = subprocess.Popen(me + ["--role", "sub", "--out", str(out), "--budget", str(budget)], env=env)
    pub = subprocess.Popen(me + ["--role", "pub", "--frames", str(frames), "--rate", str(rate)], env=env)
    try:
        pub.wait(budget)
        sub.wait(budget)
    finally:
        for p in (pub, sub):
            if p.poll() is None:
                p.kill()
    if not out.is_file():
        raise RuntimeError(f"{setting}: the subscriber wrote no result")
    res = json.loads(out.read_text())
    lat = np.array(res["latency_ms"]) if res["latency_ms"] else np.array([np.nan])
    return {
        "setting": setting,
        "fastdds_profile": str(FASTDDS_PROFILE.relative_to(ROOT)) if shm else None,
        "published": frames,
        "received": res["received"],
        "share": res["received"] / frames,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
    }


def main() -> int:
    """Measure both settings, print the table, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("bench", "pub", "sub"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=300, help="frames per setting (default 300)")
    parser.add_argument("--rate", type=float, default=30.0, help="publishing rate in Hz (default 30)")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.frames <= 0 or args.rate <= 0:
        parser.error("--frames and --rate must be positive")
    if args.role == "pub":
        publisher(args.frames, args.rate)
        return 0
    if args.role == "sub":
        subscriber(args.out, args.budget)
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    base = 60 + os.getpid() % 30
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            run("Fast DDS defaults", False, base, args.frames, args.rate, Path(tmp)),
            run("mtml SHM profile (16 MiB segment)", True, base + 1, args.frames, args.rate, Path(tmp)),
        ]
    print(f"\n{args.frames} frames 640x480 rgb8 at {args.rate:g} Hz, SensorData QoS (best effort), 2 processes")
    print(f"{'setting':<36}{'received':>10}{'share':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for r in rows:
        print(f"{r['setting']:<36}{r['received']:>10}{r['share']:>8.1%}{r['latency_ms_p50']:>9.2f}"
              f"{r['latency_ms_p99']:>9.2f}")
    result = {
        "benchmark": "dds_transport",
        "image": "640x480 rgb8",
        "rate_hz": args.rate,
        "frames": args.frames,
        "qos": "sensor_data (best effort, keep last 5)",
        "rmw": "rmw_fastrtps_cpp",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(OUT, result)
    print(f"saved {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
