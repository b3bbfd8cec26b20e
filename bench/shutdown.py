"""Ctrl-C during a bag replay, many times: perception_node and bag_camera started together, the bag played into
the node at 30 Hz, then one SIGINT to both process groups (what a terminal's Ctrl-C does to a launch) after a
random 2-10 s of serving. Every exit status is recorded; a node or camera that does not exit within 15 s is
killed and counted as a hang. ``PYTHONFAULTHANDLER`` is set, so a crash leaves every thread's Python stack in the
log kept for it.

    .venv/bin/python bench/shutdown.py [--cycles 20] [--bag DIR] [--seed 0]

The bag: ``--bag``, else the EuRoC camera bag in ../shared/data/bags/euroc_cam_mcap, else 60 synthetic 640x480
frames written to a temporary sqlite3 bag. Writes bench/results/shutdown.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from mtml.ros_env import ros_env  # noqa: E402

OUT = ROOT / "bench" / "results" / "shutdown.json"
EUROC = ROOT.parent / "shared" / "data" / "bags" / "euroc_cam_mcap"
READY = "serving "  # the node's start-up log line
EXIT_WAIT = 15.0


def synthetic_bag(path: Path, n: int = 60) -> Path:
    """A sqlite3 bag of ``n`` rendered 640x480 rgb8 frames on /cam/image."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from mtml_core.data.spec import builtin_envs
    from mtml_core.data.synth import render_frame

    ts = get_typestore(Stores.ROS2_JAZZY)
    image, hdr, stamp_t = (ts.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                  "builtin_interfaces/msg/Time"))
    env = builtin_envs("train")[0]
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        for i in range(n):
            rgb = render_frame(env, i, (480, 640)).rgb
            stamp = 1_700_000_000_000_000_000 + i * 33_333_333
            msg = image(header=hdr(stamp=stamp_t(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam"),
                        height=480, width=640, encoding="rgb8", is_bigendian=0, step=640 * 3,
                        data=np.ascontiguousarray(rgb).reshape(-1))
            writer.write(conn, stamp, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return path


def wait_ready(log: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """True once the node logged its start-up line (False if it exited or the time ran out)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if READY in log.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def stop(procs: dict[str, subprocess.Popen]) -> dict[str, int | str]:
    """SIGINT every process group at once; exit status per process ('hang' if killed after EXIT_WAIT s)."""
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    out: dict[str, int | str] = {}
    end = time.monotonic() + EXIT_WAIT
    for name, p in procs.items():
        try:
            out[name] = p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            out[name] = "hang"
    return out


def cycle(i: int, bag: Path, topic: str, work: Path, env: dict[str, str], delay: float) -> dict:
    """One start, replay, Ctrl-C; the logs are kept only when something exited non-zero."""
    logs = {n: work / f"{n}_{i}.log" for n in ("node", "camera")}
    argv = {"node": [sys.executable, "-m", "mtml.perception_node", "--ros-args", "--params-file",
                     str(ROOT / "config" / "perception.yaml"), "-p", "threads:=1",
                     "-p", f"profile_dir:={work / 'profiles'}", "-r", "image:=/replay"],
            "camera": [sys.executable, "-m", "mtml.bag_camera", "--ros-args", "-p", f"bag:={bag}",
                       *(["-p", f"topic:={topic}"] if topic else []), "-p", "rate:=30.0", "-p", "loop:=true",
                       "-r", "image:=/replay"]}
    procs = {}
    for name, cmd in argv.items():
        with open(logs[name], "wb") as fh:
            procs[name] = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    ready = wait_ready(logs["node"], procs["node"], 60)
    if ready:
        time.sleep(delay)
    early = {n: p.poll() for n, p in procs.items()}
    codes = stop(procs)
    row = {"cycle": i, "ready": ready, "served_s": round(delay, 2), "exit": codes,
           "exited_before_ctrl_c": {n: c for n, c in early.items() if c is not None}}
    if not ready or any(c != 0 for c in codes.values()) or row["exited_before_ctrl_c"]:
        row["log_tails"] = {n: path.read_text(errors="replace")[-4000:] for n, path in logs.items()}
    for path in logs.values():
        path.unlink()
    return row


def main() -> int:
    """Run the cycles, print a line per cycle, write the JSON; exit 1 when any cycle failed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--bag", type=Path, help="rosbag2 folder (default: the EuRoC bag, else a synthetic one)")
    ap.add_argument("--topic", help="its image topic (default: the bag's first image topic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mtml-shutdown-") as tmp:
        work = Path(tmp)
        bag = args.bag or (EUROC if EUROC.is_dir() else synthetic_bag(work / "bag"))
        topic = args.topic or ""  # bag_camera's default: the bag's first image topic
        env = {**ros_env(80 + args.seed % 20), "PYTHONFAULTHANDLER": "1"}
        rows = []
        for i in range(args.cycles):
            row = cycle(i, bag, topic, work, env, float(rng.uniform(2.0, 10.0)))
            rows.append(row)
            print(f"cycle {i:3d}: ready {row['ready']}, served {row['served_s']:5.2f} s, exit {row['exit']}",
                  flush=True)
    failed = [r["cycle"] for r in rows if not r["ready"] or r["exited_before_ctrl_c"]
              or any(c != 0 for c in r["exit"].values())]
    report = {"bag": str(bag), "topic": topic, "cycles": args.cycles, "failed_cycles": failed,
              "exit_codes": {n: sorted({str(r["exit"][n]) for r in rows}) for n in ("node", "camera")},
              "seconds": round(time.monotonic() - start, 1), "machine": platform.processor() or platform.machine(),
              "rows": rows}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{len(failed)} of {args.cycles} cycles failed {failed}; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
