"""perception_node under attack: malformed messages and bad service calls from another process, valid frames
interleaved, the node's memory and log watched; optionally a soak at 30 Hz.

    .venv/bin/python bench/robustness.py [--messages 10000] [--calls 1000] [--seed 0] [--soak-minutes 10]

Phases (one node, the shipped default model, onnxruntime 1 thread):
1. warm-up: a few hundred malformed messages and valid frames (the node's caches and pools fill);
2. ``--messages`` malformed messages, every one unique (encodings, sizes, strides, K values, ...): images,
   camera_info, vp_label, depth_label, with a valid frame every ``--every`` of them that must be answered; the
   node's RSS is read from /proc before and after (growth target <= 10 MB);
3. while collecting: malformed depth labels and vanishing-point labels matched to valid frames;
4. ``--calls`` bad service calls (collect/adapt/profiles/recognize with bad names, paths, ranges, commands), each
   of which must be answered with success false and a reason, valid frames still answered in between;
5. optional soak: valid frames at 30 Hz for ``--soak-minutes``, one malformed message a second; RSS growth (%)
   and the drift of the per-minute p99 latency (last minute vs first);
6. Ctrl-C: the node must exit with status 0 within 10 s.

A crash is the node process ending before phase 6; a hang a valid frame or a call unanswered within its timeout.
Writes bench/results/robustness.json (or ``--out``). The fuzz suite tests/test_fuzz_node.py runs the same client
with small counts. Every message is generated from ``--seed``.
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from mtml.params import DEFAULT_MODEL  # noqa: E402
from mtml.ros_env import ros_env  # noqa: E402
from mtml_core.backends.manifest import write_json_atomic  # noqa: E402

OUT = ROOT / "bench" / "results" / "robustness.json"
NODE = "/perception_node"
VALID_HW = (120, 160)
FRAME_TIMEOUT = 5.0  # s a valid frame may take before it counts as a hang
CALL_TIMEOUT = 20.0  # s a service call may take before it counts as a hang
TARGETS = {"rss_growth_mb": 10.0, "soak_rss_growth_pct": 2.0, "soak_p99_drift_pct": 20.0}
WEIRD = ("", " ", "\n", "rgb8\n", "RGB8", "rgb8 ", "../../etc/passwd", "\x00", "\u202e8bgr", "ü", "💥", "%s%n",
         "32FC1", "16UC1", "bayer_rggb8", "yuv422", "8UC3", "rgba8", "64FC1")
BAD_NAMES = ("", "../x", "a/b", "/etc/passwd", "lab\n", "x" * 65, "\x00", "ü", "lab lab", "*", "💥", "a" * 5000,
             "con\r", "../../etc/x")


# -- messages (client side; ROS types imported lazily) -----------------------------------------------------------------
def header(sec: int, nanosec: int = 0) -> Any:
    """A std_msgs/Header with the stamp (sec, nanosec)."""
    from std_msgs.msg import Header

    h = Header(frame_id="fuzz")
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def unique_string(rng: np.random.Generator, i: int) -> str:
    """A different odd string for every ``i``: weird prefixes, control characters, long runs."""
    base = WEIRD[i % len(WEIRD)]
    tail = "".join(chr(int(c)) for c in rng.integers(1, 0x2FF, int(rng.integers(0, 12))))
    return (base + tail + str(i)) * (1 + (i % 97 == 0) * 300)


def bad_image(rng: np.random.Generator, i: int) -> Any:
    """A malformed sensor_msgs/Image (kind i % 8), unique per ``i``."""
    from sensor_msgs.msg import Image

    h = header(1_000_000 + i)
    kind = i % 8
    w = int(rng.integers(1, 400))
    if kind == 0:  # unsupported encoding
        return Image(header=h, height=2, width=2, encoding=unique_string(rng, i), step=6, data=bytes(12))
    if kind == 1:  # step shorter than a row
        return Image(header=h, height=2, width=w, encoding="rgb8", step=3 * w - 1 - i % 3, data=bytes(6 * w))
    if kind == 2:  # truncated data
        return Image(header=h, height=3, width=w, encoding="bgr8", step=3 * w, data=bytes(9 * w - 1 - i % 5))
    if kind == 3:  # zero size
        return Image(header=h, height=i % 3, width=0, encoding="mono8", step=0, data=b"")
    if kind == 4:  # beyond max_image_pixels (no data needed: the size is checked first)
        return Image(header=h, height=2160 + i % 1000, width=3840, encoding="rgb8", step=3 * 3840)
    if kind == 5:  # dimensions near the integer limits
        return Image(header=h, height=2**32 - 1 - i % 7, width=2**32 - 1, encoding="rgb8", step=2**32 - 1)
    if kind == 6:  # too much data for the header
        return Image(header=h, height=2, width=w, encoding="mono8", step=w, data=bytes(2 * w + 1 + i % 9))
    return Image(header=h, height=4, width=w, encoding="rgb8", step=3 * w + i % 4, data=bytes(1 + i % 50))


def bad_camera_info(rng: np.random.Generator, i: int) -> Any:
    """A camera_info with an unusable K (huge, non-finite, negative, not pinhole) or size."""
    from sensor_msgs.msg import CameraInfo

    values = (1e308, -1e308, float("nan"), float("inf"), -float("inf"), 1e39, 1e300, 0.0, -5.0, 1e7)
    k = np.array([500.0, 0, 80, 0, 500.0, 60, 0, 0, 1])
    for _ in range(int(rng.integers(1, 4))):
        k[int(rng.choice([0, 1, 2, 4, 5, 6, 7, 8]))] = values[int(rng.integers(len(values)))]
    hw = [(120, 160), (0, 160), (120, 0), (2**32 - 1, 2**32 - 1)][i % 4]
    d = rng.normal(size=int(rng.integers(0, 2000) if i % 50 == 0 else 5)).tolist()
    return CameraInfo(header=header(1_000_000 + i), height=hw[0], width=hw[1], k=k.tolist(), d=d,
                      distortion_model=unique_string(rng, i)[:500])


def bad_vp_label(rng: np.random.Generator, i: int) -> Any:
    """VanishingPoints (always three directions: the type fixes it) that are non-finite, zero, huge or
    identical."""
    from geometry_msgs.msg import Vector3
    from mtml_interfaces.msg import VanishingPoints

    kind = i % 5
    if kind == 0:
        dirs = [[float("nan"), 0, 1]] * 3
    elif kind == 1:
        dirs = [[0.0, 0.0, 1.0]] * 3  # three identical directions
    elif kind == 2:
        dirs = [[0.0, 0.0, 0.0]] * 3
    elif kind == 3:
        dirs = [[float("inf"), -float("inf"), 1.0]] * 3
    else:
        dirs = (rng.normal(size=(3, 3)) * 10.0 ** int(rng.integers(-300, 300))).tolist()
    return VanishingPoints(header=header(2_000_000 + i), directions=[Vector3(x=float(a), y=float(b), z=float(c))
                                                                       for a, b, c in dirs])


def bad_depth(rng: np.random.Generator, i: int, sec: int) -> Any:
    """A depth label for the frame stamped ``sec``: wrong encoding, size, garbage values or too large."""
    from sensor_msgs.msg import Image

    h, w = VALID_HW
    kind = i % 5
    if kind == 0:
        return Image(header=header(sec), height=h, width=w, encoding=unique_string(rng, i), step=4 * w,
                     data=bytes(4 * w * h))
    if kind == 1:  # another size
        return Image(header=header(sec), height=h // 2, width=w, encoding="32FC1", step=4 * w,
                     data=np.ones(h // 2 * w, np.float32).tobytes())
    if kind == 2:  # 1e-42 m everywhere (denormal garbage)
        return Image(header=header(sec), height=h, width=w, encoding="32FC1", step=4 * w,
                     data=np.full(h * w, 1e-42, np.float32).tobytes())
    if kind == 3:  # beyond max_image_pixels
        return Image(header=header(sec), height=4000, width=4000, encoding="16UC1", step=8000)
    return Image(header=header(sec), height=h, width=w, encoding="16UC1", step=2 * w, data=bytes(7))


def bad_compressed(rng: np.random.Generator, i: int) -> Any:
    """A CompressedImage that is not a decodable JPEG/PNG, or claims a huge size."""
    from sensor_msgs.msg import CompressedImage

    kind = i % 4
    if kind == 0:
        data = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
    elif kind == 1:  # JPEG start, garbage after
        data = b"\xff\xd8" + rng.integers(0, 256, int(rng.integers(0, 500)), dtype=np.uint8).tobytes()
    elif kind == 2:  # PNG header claiming a huge image
        data = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + int(60000 + i).to_bytes(4, "big") * 2
                + bytes(int(rng.integers(5, 200))))
    else:  # PNG header, body garbage
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (64).to_bytes(4, "big") * 2 + bytes(60)
    return CompressedImage(header=header(1_000_000 + i), format=unique_string(rng, i)[:100], data=data)


def bad_calls(rng: np.random.Generator, n: int) -> list[tuple[str, dict]]:
    """``n`` service calls each of which must be refused with a reason."""
    calls: list[tuple[str, dict]] = []
    for i in range(n):
        kind = i % 10
        name = BAD_NAMES[int(rng.integers(len(BAD_NAMES)))]
        if kind == 0:
            calls.append(("collect", {"environment": name, "start": bool(i % 3)}))
        elif kind == 1:  # bad vanishing directions
            dirs = [[float("nan")] * 9, [0.0] * 9, [0.0, 0, 1] * 3, (rng.normal(size=9) * 1e38).tolist()][i % 4]
            calls.append(("collect", {"environment": "lab", "start": True, "has_vanishing": True,
                                      "vanishing_directions": [float(v) for v in dirs]}))
        elif kind == 2:  # bad class labels
            label = ["\n", "x" * 5000, "\x01\x02", "a\tb" * 100][i % 4]  # ("\x00..." arrives as "": no label)
            calls.append(("collect", {"environment": "lab", "start": True, "class_label": label}))
        elif kind == 3:
            calls.append(("collect", {"environment": f"never{i}", "start": False}))
        elif kind == 4:  # step counts out of range
            steps = [-1, -(2**31), 2**31 - 1, 1001, 10**6][i % 5]
            calls.append(("adapt", {"environment": "lab", "inner_steps": steps}))
        elif kind == 5:
            calls.append(("adapt", {"environment": name if name else f"empty{i}", "inner_steps": 1}))
        elif kind == 6:
            calls.append(("profiles", {"command": unique_string(rng, i)[:300], "name": "x"}))
        elif kind == 7:
            calls.append(("profiles", {"command": ["load", "delete", "save"][i % 3], "name": name or "a/b"}))
        elif kind == 8:
            calls.append(("profiles", {"command": "load", "name": f"missing{i}"}))
        else:
            calls.append(("recognize", {"switch_profile": bool(i % 2)}))
    return calls


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- client (a ROS process) --------------------------------------------------------------------------------------------
class Fuzzer:
    """Publishes malformed and valid messages, calls services, checks the answers."""

    def __init__(self, node_pid: int, seed: int, transport: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from mtml_interfaces.msg import VanishingPoints
        from mtml_interfaces.srv import Adapt, Collect, Profile, Recognize
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from mtml.image_conv import rgb_to_msg
        from mtml_core.data.spec import get_env
        from mtml_core.data.synth import render_frame

        self.rclpy, self.pid, self.transport = rclpy, node_pid, transport
        self.rng = np.random.default_rng(seed)
        rclpy.init()
        self.node = rclpy.create_node(f"fuzz_client_{os.getpid()}")
        sensor = qos_profile_sensor_data
        reliable = QoSProfile(depth=100)
        self.pub_image = self.node.create_publisher(Image, "/image", reliable)
        self.pub_compressed = self.node.create_publisher(CompressedImage, "/image/compressed", reliable)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera_info", reliable)
        self.pub_depth = self.node.create_publisher(Image, "/depth_label", reliable)
        self.pub_vp = self.node.create_publisher(VanishingPoints, "/vp_label", reliable)
        self.answered: dict[int, float] = {}
        self.node.create_subscription(Image, f"{NODE}/depth", self._answer, sensor)
        self.diag: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, QoSProfile(depth=5))
        self.types = {"collect": Collect, "adapt": Adapt, "profiles": Profile, "recognize": Recognize}
        self.clients = {k: self.node.create_client(t, f"{NODE}/{k}") for k, t in self.types.items()}
        frame = render_frame(get_env("corridor_office"), 0, VALID_HW)
        self.valid = rgb_to_msg(frame.rgb)
        import cv2

        self.valid_jpeg = cv2.imencode(".jpg", frame.rgb[..., ::-1])[1].tobytes()
        self.frames_sent, self.frames_missed, self.latency = 0, [], []
        self.sent = {"image": 0, "camera_info": 0, "vp_label": 0, "depth_label": 0, "compressed": 0}
        self.next_valid = 3_000_000

    def _answer(self, msg: Any) -> None:
        self.answered.setdefault(msg.header.stamp.sec, time.monotonic())

    def _diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("mtml: "):
                self.diag = {kv.key: kv.value for kv in status.values}

    def spin(self, seconds: float) -> None:
        """Serve callbacks for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.rclpy.spin_once(self.node, timeout_sec=min(left, 0.005))

    def spin_until(self, done: Any, timeout: float) -> bool:
        """Serve callbacks until ``done()`` or ``timeout`` s."""
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.005)
        return bool(done())

    def alive(self) -> bool:
        """Whether the node process still exists."""
        return Path(f"/proc/{self.pid}").exists()

    def valid_frame(self, wait: bool = True) -> int:
        """Publish a valid frame (its camera_info first) with a fresh stamp; with ``wait`` wait for its depth."""
        from sensor_msgs.msg import CompressedImage

        from mtml.messages import camera_info_msg
        from mtml_core.data.geometry import intrinsics

        sec = self.next_valid
        self.next_valid += 1
        h = header(sec)
        self.pub_info.publish(camera_info_msg(intrinsics(60.0, VALID_HW), VALID_HW, h))
        t0 = time.monotonic()
        if self.transport == "compressed":
            self.pub_compressed.publish(CompressedImage(header=h, format="jpeg", data=self.valid_jpeg))
        else:
            self.valid.header = h
            self.pub_image.publish(self.valid)
        self.frames_sent += 1
        if wait:
            if self.spin_until(lambda: sec in self.answered, FRAME_TIMEOUT):
                self.latency.append(self.answered[sec] - t0)
            else:
                self.frames_missed.append(sec)
        return sec

    def publish_bad(self, i: int) -> None:
        """The i-th malformed message (image, camera_info, vp_label or compressed, in turn)."""
        kind = ("image", "camera_info", "image", "vp_label")[i % 4]
        if kind == "image" and self.transport == "compressed":
            kind = "compressed"
        make = {"image": (bad_image, self.pub_image), "camera_info": (bad_camera_info, self.pub_info),
                "vp_label": (bad_vp_label, self.pub_vp), "compressed": (bad_compressed, self.pub_compressed)}
        fn, pub = make[kind]
        pub.publish(fn(self.rng, i))
        self.sent[kind] += 1

    def flood(self, start: int, count: int, every: int, pace: float) -> None:
        """``count`` malformed messages (indices from ``start``), a valid frame after every ``every``."""
        for j in range(count):
            self.publish_bad(start + j)
            self.spin(pace)
            if (j + 1) % every == 0:
                self.valid_frame()
                if not self.alive():
                    return

    def call(self, service: str, fields: dict) -> dict | None:
        """Call one of the node's services; the response as a dict, or None without an answer in time."""
        cli = self.clients[service]
        if not self.spin_until(cli.service_is_ready, CALL_TIMEOUT):
            return None
        future = cli.call_async(self.types[service].Request(**fields))
        if not self.spin_until(future.done, CALL_TIMEOUT):
            return None
        res = future.result()
        return {"success": bool(res.success), "message": str(res.message)}

    def collecting_phase(self, count: int) -> dict:
        """Bad depth and VP labels matched to valid frames while collecting; the collection's answers."""
        start = self.call("collect", {"environment": "fuzzlab", "start": True, "class_label": "room"})
        for i in range(count):
            sec = self.next_valid
            self.pub_depth.publish(bad_depth(self.rng, i, sec))
            self.sent["depth_label"] += 1
            if i % 2:
                vp = bad_vp_label(self.rng, i)
                vp.header = header(sec)
                self.pub_vp.publish(vp)
                self.sent["vp_label"] += 1
            self.spin(0.01)
            self.valid_frame()
        stop = self.call("collect", {"environment": "fuzzlab", "start": False})
        return {"start": start, "stop": stop}

    def calls_phase(self, n: int, seed: int) -> dict:
        """``n`` bad calls; how many were refused with a reason, accepted, or not answered."""
        refused = unanswered = 0
        accepted: list[str] = []
        examples: dict[str, str] = {}
        for i, (service, fields) in enumerate(bad_calls(np.random.default_rng(seed + 1), n)):
            res = self.call(service, fields)
            if res is None:
                unanswered += 1
            elif not res["success"] and res["message"].strip():
                refused += 1
                examples.setdefault(f"{service}:{i % 10}", res["message"][:200])
            else:
                accepted.append(f"{service} {json.dumps(fields)[:200]}")
            if (i + 1) % 50 == 0:
                self.valid_frame()
                if not self.alive():
                    break
        return {"calls": n, "refused_with_reason": refused, "accepted": len(accepted), "unanswered": unanswered,
                "accepted_calls": accepted[:20], "examples": examples}

    def soak(self, minutes: float, rate: float = 30.0) -> dict:
        """Valid frames at ``rate`` Hz (one malformed message a second); RSS and p99 per minute."""
        per_minute: list[dict] = []
        rss0 = rss_mb(self.pid)
        start = time.monotonic()
        i = 0
        for minute in range(int(np.ceil(minutes))):
            stamps = []
            t_min = time.monotonic()
            while time.monotonic() - t_min < 60.0 and time.monotonic() - start < minutes * 60:
                target = start + i / rate
                self.spin(max(0.0, target - time.monotonic()))
                stamps.append((self.valid_frame(wait=False), time.monotonic()))
                if i % int(rate) == 0:
                    self.publish_bad(10_000_000 + i)
                i += 1
            self.spin(0.5)
            lat = np.array([self.answered[s] - t for s, t in stamps if s in self.answered]) * 1e3
            per_minute.append({"minute": minute, "frames": len(stamps), "answered": int(lat.size),
                               "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
                               "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
                               "rss_mb": rss_mb(self.pid) if self.alive() else None})
            if not self.alive():
                break
        rss1 = per_minute[-1]["rss_mb"]
        p99 = [m["p99_ms"] for m in per_minute if m["p99_ms"] is not None]
        return {"minutes": minutes, "rate_hz": rate, "per_minute": per_minute, "rss_start_mb": rss0,
                "rss_end_mb": rss1, "rss_growth_pct": None if rss1 is None else 100.0 * (rss1 - rss0) / rss0,
                "p99_first_ms": p99[0] if p99 else None, "p99_last_ms": p99[-1] if p99 else None,
                "p99_drift_pct": 100.0 * (p99[-1] - p99[0]) / p99[0] if len(p99) > 1 else None,
                "answered_share": sum(m["answered"] for m in per_minute) / max(sum(m["frames"] for m in per_minute),
                                                                                1)}


def run_client(args: argparse.Namespace) -> int:
    """All phases; prints one JSON line."""
    f = Fuzzer(args.node_pid, args.seed, args.transport)
    out: dict[str, Any] = {}
    try:
        if not f.spin_until(lambda: f.valid_frame() in f.answered, 600.0):  # start-up (a first export) under load
            print(json.dumps({"error": "the node never answered a valid frame"}), flush=True)
            return 1
        f.frames_missed.clear()  # frames sent while the node was starting do not count
        f.frames_sent = 0
        t0 = time.monotonic()
        f.flood(0, args.warmup, args.every, args.pace)
        f.spin(1.0)
        rss0 = rss_mb(args.node_pid)
        f.flood(args.warmup, args.messages, args.every, args.pace)
        f.spin(2.0)
        out["rss_mb"] = {"after_warmup": rss0, "after_messages": rss_mb(args.node_pid) if f.alive() else None}
        out["flood_seconds"] = time.monotonic() - t0
        if f.alive() and args.collect:
            out["collecting"] = f.collecting_phase(args.collect)
        if f.alive() and args.calls:
            out["service_calls"] = f.calls_phase(args.calls, args.seed)
        if f.alive() and args.soak_minutes:
            out["soak"] = f.soak(args.soak_minutes)
        for _ in range(3):  # still serving at the end
            f.valid_frame()
        f.spin(1.5)  # the last diagnostics
        lat = np.array(f.latency) * 1e3
        out.update({"alive": f.alive(), "sent": f.sent, "valid_frames": f.frames_sent,
                    "valid_unanswered": len(f.frames_missed), "valid_unanswered_stamps": f.frames_missed[:20],
                    "valid_latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                                         "max": float(lat.max())} if lat.size else None,
                    "node_diagnostics": f.diag})
    finally:
        print(json.dumps(out), flush=True)
        f.node.destroy_node()
        f.rclpy.try_shutdown()
    return 0


# -- orchestrator ------------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, work: Path, env: dict[str, str]) -> dict:
    """Start the node and the client; the client's results plus crash/hang/shutdown/log figures."""
    model = Path(args.model) if args.model else DEFAULT_MODEL
    log_path = work / "node.log"
    node_argv = [sys.executable, "-m", "mtml.perception_node", "--ros-args", "--params-file",
                 str(ROOT / "config" / "perception.yaml"), "-p", f"model:={model}", "-p", "threads:=1",
                 "-p", f"profile_dir:={work / 'profiles'}",
                 "-p", f"transport:={args.transport}", "-p", "shots:=1000", "-p", "collect_rate:=0.0",
                 "-p", "diagnostics_period:=0.5"]
    # every malformed message should reach the node: its camera input keeps only the latest frame by default, so
    # the bench deepens that queue through the node's QoS override parameters (which this also exercises)
    topic = "/image/compressed" if args.transport == "compressed" else "/image"
    node_argv += ["-p", f"qos_overrides.{topic}.subscription.depth:=200",
                  "-p", f"qos_overrides.{topic}.subscription.reliability:=reliable"]
    with open(log_path, "wb") as log:
        node = subprocess.Popen(node_argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        client_argv = [sys.executable, __file__, "--client", "--node-pid", str(node.pid), "--seed", str(args.seed),
                       "--messages", str(args.messages), "--calls", str(args.calls), "--warmup", str(args.warmup),
                       "--every", str(args.every), "--pace", str(args.pace), "--collect", str(args.collect),
                       "--soak-minutes", str(args.soak_minutes), "--transport", args.transport]
        budget = 600 + args.messages * 0.05 + args.calls * 1.0 + args.soak_minutes * 90
        t0 = time.monotonic()
        try:
            client = subprocess.run(client_argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=budget)
            client_rc, client_out = client.returncode, client.stdout + client.stderr
        except subprocess.TimeoutExpired as exc:
            client_rc, client_out = None, f"client timed out after {budget:.0f} s: {exc.stdout or ''}"
        crashed = node.poll() is not None
        exit_code, shutdown_s = node.returncode, None
        if not crashed:
            t1 = time.monotonic()
            os.killpg(node.pid, signal.SIGINT)
            try:
                exit_code = node.wait(10)
                shutdown_s = time.monotonic() - t1
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                exit_code = node.wait()
    lines = [line for line in client_out.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"client_output": client_out[-3000:]}
    text = log_path.read_text(errors="replace")
    result.update({
        "client_exit": client_rc, "seconds": time.monotonic() - t0,
        "crashes": int(crashed), "node_exit_code_before_shutdown": node.returncode if crashed else None,
        "shutdown": {"exit_code": exit_code, "seconds": shutdown_s},
        "log": {"bytes": len(text.encode()), "lines": text.count("\n"),
                "tracebacks": text.count("Traceback"), "internal_errors": text.count("internal error")},
        "log_tail": text[-1500:] if crashed or exit_code else "",
    })
    return result


def verdict(r: dict, args: argparse.Namespace) -> dict:
    """The acceptance checks, each True/False."""
    calls = r.get("service_calls", {})
    rss = r.get("rss_mb", {})
    checks = {
        "no_crash": r["crashes"] == 0 and r.get("alive", False),
        "clean_shutdown": r["shutdown"]["exit_code"] == 0,
        "no_hang": r.get("valid_unanswered", 1) == 0 and calls.get("unanswered", 0) == 0,
        "every_bad_call_refused_with_a_reason": calls.get("refused_with_reason") == args.calls,
        "every_valid_frame_answered": r.get("valid_unanswered", 1) == 0,
        "no_traceback_in_log": r["log"]["tracebacks"] == 0,
    }
    if rss.get("after_messages") is not None:
        checks["rss_growth_within_target"] = rss["after_messages"] - rss["after_warmup"] <= TARGETS["rss_growth_mb"]
    soak = r.get("soak")
    if soak:
        checks["soak_rss_within_target"] = (soak["rss_growth_pct"] is not None
                                            and soak["rss_growth_pct"] <= TARGETS["soak_rss_growth_pct"])
        checks["soak_p99_drift_within_target"] = (soak["p99_drift_pct"] is not None
                                                  and soak["p99_drift_pct"] <= TARGETS["soak_p99_drift_pct"])
    return checks


def main(argv: list[str] | None = None) -> int:
    """Command line: run the node and the fuzz client, print a summary, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="malformed messages (default 10000)")
    parser.add_argument("--calls", type=int, default=1_000, help="bad service calls (default 1000)")
    parser.add_argument("--warmup", type=int, default=400, help="malformed messages before the RSS baseline")
    parser.add_argument("--every", type=int, default=50, help="a valid frame after every N malformed messages")
    parser.add_argument("--pace", type=float, default=0.002, help="s between two malformed messages")
    parser.add_argument("--collect", type=int, default=200, help="bad labels sent while collecting")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="soak at 30 Hz for this long (0 = none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transport", choices=("raw", "compressed"), default="raw")
    parser.add_argument("--model", default="", help="export or checkpoint dir (default: the shipped default)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--domain", type=int, default=0, help="ROS_DOMAIN_ID (default: from the process id)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--node-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return run_client(args)
    env = ros_env(args.domain or 40 + os.getpid() % 50, shm=True)
    env["PYTHONUNBUFFERED"] = "1"
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    with tempfile.TemporaryDirectory() as tmp:
        r = run(args, Path(tmp), env)
    r["checks"] = verdict(r, args)
    r["config"] = {k: v for k, v in vars(args).items() if k not in ("client", "node_pid", "out")}
    r["targets"] = TARGETS
    r["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1min": os.getloadavg()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, r)
    rss = r.get("rss_mb", {})
    print(f"sent {r.get('sent')}; valid frames {r.get('valid_frames')} ({r.get('valid_unanswered')} unanswered); "
          f"calls {r.get('service_calls', {}).get('refused_with_reason')}/{args.calls} refused with a reason; "
          f"RSS {rss.get('after_warmup')} -> {rss.get('after_messages')} MB; crashes {r['crashes']}; "
          f"shutdown exit {r['shutdown']['exit_code']}; log {r['log']['lines']} lines")
    if r.get("soak"):
        s = r["soak"]
        print(f"soak {s['minutes']} min: RSS {s['rss_growth_pct']}% p99 {s['p99_first_ms']} -> {s['p99_last_ms']} ms "
              f"(drift {s['p99_drift_pct']}%)")
    print("checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in r["checks"].items()))
    print(f"saved {args.out}")
    return 0 if all(r["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
