"""End-to-end latency of perception_node (ONNX Runtime) seen by a client in another process: the client publishes
640x480 rgb8 frames and times each until all four outputs (depth, normals, vanishing points, scene) are back.

    .venv/bin/python bench/node_latency.py [--seconds 10] [--model DIR] [--no-shm] [--adapt-steps 100]

Measures p50/p99 latency and the share of frames answered at 30 Hz, an open-loop rate sweep (the node keeps the
latest frame, so above its capacity frames are dropped, not queued), the closed-loop rate (next frame as soon
as the previous one is answered), and the share answered at 30 Hz while the node collects 10 labelled frames
(640x480 depth labels + camera_info, support frames built in its background worker) and then adapts to them.
Prints a table and writes bench/results/node_latency.json, with the Fast DDS transport setting used. Targets on
the 2-core CPU dev machine: p50 <= 10 ms, p99 <= 25 ms at 30 Hz; >= 99 % answered while collecting and adapting.
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
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from mtml.params import DEFAULT_MODEL  # noqa: E402
from mtml.ros_env import ros_env  # noqa: E402
from mtml_core.backends.manifest import write_json_atomic  # noqa: E402

OUT = ROOT / "bench" / "results" / "node_latency.json"
H, W = 480, 640
NODE = "/perception_node"
OUTPUTS = ("depth", "normals", "vanishing_points", "scene")
FRAME_NS = 33_333_333  # header stamps advance by one 30 Hz frame period
SWEEP = (30.0, 60.0, 90.0, 120.0, 180.0, 240.0)
ANSWERED_FOR_SUSTAINED = 0.95
TARGETS = {"p50_ms": 10.0, "p99_ms": 25.0}


# -- client (a ROS process) -------------------------------------------------------------------------------------------
class Client:
    """Publishes frames on /image and times the node's four outputs per stamp."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from mtml_interfaces.msg import SceneClass, VanishingPoints
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from mtml.image_conv import depth_to_msg, rgb_to_msg
        from mtml.messages import camera_info_msg
        from mtml_core.data.spec import get_env
        from mtml_core.data.synth import render_frame

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node("bench_node_latency")
        self.pub = self.node.create_publisher(Image, "/image", qos_profile_sensor_data)
        self.sent: dict[int, float] = {}  # stamp -> publish time (monotonic)
        self.seen: dict[int, set[str]] = {}
        self.done: dict[int, float] = {}  # stamp -> latency (s) once all four outputs arrived
        types = {"depth": Image, "normals": Image, "vanishing_points": VanishingPoints, "scene": SceneClass}
        for name in OUTPUTS:
            self.node.create_subscription(types[name], f"{NODE}/{name}", lambda m, n=name: self._got(m, n),
                                          qos_profile_sensor_data)
        self.node_latency: list[str] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, QoSProfile(depth=5))
        env = get_env("corridor_office")
        frames = [render_frame(env, i, (H, W)) for i in range(8)]
        self.msgs = [rgb_to_msg(f.rgb) for f in frames]
        self.labels = [(camera_info_msg(f.K, (H, W), self.msgs[0].header), depth_to_msg(f.depth)) for f in frames]
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
        self.pub_depth = self.node.create_publisher(Image, "/depth_label", qos_profile_sensor_data)
        self.with_labels = False
        self.state = ""
        self.counter = 0

    def _got(self, msg: object, name: str) -> None:
        now = time.monotonic()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp not in self.sent:
            return
        got = self.seen.setdefault(stamp, set())
        got.add(name)
        if len(got) == len(OUTPUTS) and stamp not in self.done:
            self.done[stamp] = now - self.sent[stamp]

    def _diag(self, msg: object) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.state = values.get("adaptation_state", self.state)
            if "latency_ms_p50" in values and values.get("rate_hz", "0") != "0":
                self.node_latency.append(values["latency_ms_p50"])

    def publish(self) -> int:
        """Publish the next frame with a unique stamp; returns the stamp."""
        msg = self.msgs[self.counter % len(self.msgs)]
        info, depth = self.labels[self.counter % len(self.labels)]
        self.counter += 1
        # unique (keys the answers), never a real time, and one 30 Hz frame period apart, as a camera's: the node's
        # collect_rate limit reads header stamps (1 ns apart, only the first frame was ever collected)
        stamp = 10**18 + self.counter * FRAME_NS
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        if self.with_labels:  # the frame's labels first, as a camera driver does
            info.header.stamp = depth.header.stamp = msg.header.stamp
            self.pub_info.publish(info)
            self.pub_depth.publish(depth)
        self.sent[stamp] = time.monotonic()
        self.pub.publish(msg)
        return stamp

    def spin(self, until: float) -> None:
        """Serve callbacks until monotonic time ``until``."""
        while (left := until - time.monotonic()) > 0:
            self.rclpy.spin_once(self.node, timeout_sec=min(left, 0.002))

    def open_loop(self, rate: float, seconds: float) -> dict:
        """Publish at ``rate`` Hz for ``seconds``; latency and share answered of those frames."""
        stamps = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            self.spin(start + i / rate)
            stamps.append(self.publish())
        self.spin(time.monotonic() + 0.5)  # the last answers
        return summary(rate, [self.done.get(s) for s in stamps], seconds)

    def closed_loop(self, seconds: float) -> dict:
        """Next frame as soon as the previous one is fully answered (timeout 1 s)."""
        lat = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            stamp = self.publish()
            end = time.monotonic() + 1.0
            while stamp not in self.done and time.monotonic() < end:
                self.rclpy.spin_once(self.node, timeout_sec=0.002)
            lat.append(self.done.get(stamp))
        elapsed = time.monotonic() - start
        row = summary(len(lat) / elapsed, lat, elapsed)
        row["mode"] = "closed loop"
        return row

    def collect_and_adapt(self, steps: int, rate: float = 30.0, timeout: float = 120.0) -> dict:
        """Frames with depth labels + camera_info at ``rate`` Hz while the node collects ``shots`` of them and
        then adapts (``steps`` inner steps); share answered and latency per phase."""
        from mtml_interfaces.srv import Adapt, Collect

        clients = {"collect": self.node.create_client(Collect, f"{NODE}/collect"),
                   "adapt": self.node.create_client(Adapt, f"{NODE}/adapt")}
        for cli in clients.values():
            while not cli.service_is_ready():
                self.rclpy.spin_once(self.node, timeout_sec=0.05)
        self.with_labels = True
        phases: dict[str, list[int]] = {"collecting": [], "adapting": []}
        bounds: dict[str, list[float]] = {}
        phase, future = "collecting", clients["collect"].call_async(
            Collect.Request(environment="bench", start=True, class_label="room"))
        answer = None
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < timeout:
            self.spin(start + i / rate)
            i += 1
            phases[phase].append(self.publish())
            bounds.setdefault(phase, [time.monotonic(), 0.0])[1] = time.monotonic()
            if phase == "collecting" and future.done() and self.state == "idle" and len(phases[phase]) > rate:
                phase, future = "adapting", clients["adapt"].call_async(
                    Adapt.Request(environment="bench", inner_steps=steps))
            elif phase == "adapting" and future.done():
                answer = future.result()
                break
        self.with_labels = False
        self.spin(time.monotonic() + 0.5)
        out = {name: summary(rate, [self.done.get(s) for s in stamps], bounds[name][1] - bounds[name][0])
               for name, stamps in phases.items() if stamps}
        out["adapt_answer"] = None if answer is None else {"success": answer.success, "message": answer.message,
                                                            "seconds": answer.seconds}
        return out

    def warm_up(self, timeout: float = 60.0) -> None:
        """Publish until the node answers (it may still be starting)."""
        end = time.monotonic() + timeout
        while not self.done and time.monotonic() < end:
            self.publish()
            self.spin(time.monotonic() + 0.1)
        if not self.done:
            raise RuntimeError(f"perception_node did not answer within {timeout:.0f} s")
        self.open_loop(30.0, 2.0)


def summary(rate: float, latencies: list[float | None], seconds: float) -> dict:
    """Share answered and latency percentiles (ms) of the answered frames."""
    ok = np.array([x for x in latencies if x is not None]) * 1e3
    pct = (lambda q: float(np.percentile(ok, q))) if ok.size else (lambda q: float("nan"))
    return {"mode": "open loop", "rate_hz": rate, "seconds": seconds, "frames": len(latencies),
            "answered": int(ok.size), "share": ok.size / max(len(latencies), 1), "p50_ms": pct(50),
            "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": float(ok.max()) if ok.size else float("nan"),
            "answered_per_s": ok.size / seconds}


def run_client(out: Path, seconds: float, adapt_steps: int) -> int:
    """The measurements; writes JSON to ``out``."""
    client = Client()
    try:
        client.warm_up()
        at30 = client.open_loop(30.0, seconds)
        sweep = [client.open_loop(rate, 3.0) for rate in SWEEP]
        closed = client.closed_loop(5.0)
        collecting = client.collect_and_adapt(adapt_steps)
    except RuntimeError as exc:
        print(f"node_latency: error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.node.destroy_node()
        client.rclpy.try_shutdown()
    out.write_text(json.dumps({"at_30hz": at30, "sweep": sweep, "closed_loop": closed,
                               "collect_and_adapt_30hz": collecting, "node_processing_ms_p50": client.node_latency}))
    return 0


# -- orchestrator ------------------------------------------------------------------------------------------------------
def shm_setting(env: dict[str, str]) -> dict:
    """The Fast DDS transport the processes run with."""
    profile = env.get("FASTRTPS_DEFAULT_PROFILES_FILE")
    if not profile:
        return {"profile": None, "transport": "Fast DDS defaults (SHM 512 KiB segment + UDPv4)"}
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    seg = ET.parse(profile).getroot().find(".//f:transport_descriptor[f:type='SHM']/f:segment_size", ns)
    return {"profile": str(Path(profile).relative_to(ROOT)), "shm_segment_bytes": int(seg.text),
            "transport": f"SHM {int(seg.text) // 2**20} MiB segment + UDPv4 (builtin transports off)"}


def input_hw(model: Path) -> list[int]:
    """[H, W] the model runs at (export manifest or checkpoint config)."""
    if (model / "manifest.json").is_file():
        return json.loads((model / "manifest.json").read_text())["input"]["shape"][2:]
    from mtml_core.checkpoint import load_config

    return list(load_config(model)["model"]["input_hw"])


def untrained_model(tmp: Path) -> Path:
    """An export of the default architecture with random weights (same compute as a trained one)."""
    import torch

    from mtml_core.config import ModelConfig
    from mtml_core.export import export_model
    from mtml_core.model import MultiTaskModel

    torch.manual_seed(0)
    export_model(MultiTaskModel(ModelConfig()), tmp / "model")
    return tmp / "model"


def main() -> int:
    """Start the node and the client, print the table, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the 30 Hz run (default 10)")
    parser.add_argument("--model", default="", help="export directory (default: the shipped default)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads of the node (default 1)")
    parser.add_argument("--no-shm", action="store_true", help="Fast DDS defaults instead of the SHM profile")
    parser.add_argument("--adapt-steps", type=int, default=100, help="inner steps of the adaptation measured at "
                        "30 Hz after collecting (default 100)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"result file (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return run_client(args.client, args.seconds, args.adapt_steps)
    env = ros_env(60 + os.getpid() % 40, shm=not args.no_shm)
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = Path(args.model) if args.model else DEFAULT_MODEL
        trained = (model / "manifest.json").is_file() or (model / "model.safetensors").is_file()
        if not trained:
            print(f"node_latency: no model at {model}; timing an untrained export of the default architecture")
            model = untrained_model(tmp)
        log = open(tmp / "node.log", "wb")
        node = subprocess.Popen(
            [sys.executable, "-m", "mtml.perception_node", "--ros-args", "--params-file",
             str(ROOT / "config" / "perception.yaml"), "-p", f"model:={model}", "-p", f"threads:={args.threads}",
             "-p", f"profile_dir:={tmp / 'profiles'}"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out = tmp / "client.json"
            rc = subprocess.run([sys.executable, __file__, "--client", str(out), "--seconds", str(args.seconds),
                                 "--adapt-steps", str(args.adapt_steps)],
                                env=env, cwd=ROOT, timeout=args.seconds + 400).returncode
        finally:
            os.killpg(node.pid, signal.SIGINT)
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
            log.close()
        if rc != 0:
            print((tmp / "node.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            return rc
        res = json.loads(out.read_text())
        network_input = input_hw(model)
    sustained = [r["rate_hz"] for r in res["sweep"] if r["share"] >= ANSWERED_FOR_SUSTAINED]
    at30 = res["at_30hz"]
    result = {
        "benchmark": "node_latency",
        "image": f"{W}x{H} rgb8", "network_input": network_input,
        "backend": "onnxruntime", "onnxruntime_threads": args.threads,
        "model": "shipped default" if trained and not args.model else str(model), "trained_model": trained,
        "latency": "client publish -> all four outputs received by the client (same host clock)",
        "rmw": env["RMW_IMPLEMENTATION"], "fastdds": shm_setting(env),
        "qos": {"image": "sensor_data, keep last 1 in the node", "outputs": "reliable keep last 2"},
        "at_30hz": at30, "sweep": res["sweep"], "closed_loop": res["closed_loop"],
        "collect_and_adapt_30hz": res["collect_and_adapt_30hz"],
        "collect_and_adapt_target": ">= 99% of the frames answered while collecting and while adapting",
        "max_sustained_rate_hz": max(sustained) if sustained else None,
        "sustained_means": f">= {ANSWERED_FOR_SUSTAINED:.0%} of the published frames answered",
        "node_processing_ms_p50_samples": res["node_processing_ms_p50"],
        "targets": TARGETS,
        "meets_targets": at30["p50_ms"] <= TARGETS["p50_ms"] and at30["p99_ms"] <= TARGETS["p99_ms"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1min": os.getloadavg()[0]},
    }
    print(f"\nperception_node, onnxruntime ({args.threads} thread), {W}x{H} rgb8 in, transport: "
          f"{result['fastdds']['transport']}")
    print(f"{'mode':<12}{'rate Hz':>9}{'frames':>8}{'answered':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for r in [at30, *res["sweep"], res["closed_loop"]]:
        print(f"{r['mode']:<12}{r['rate_hz']:>9.1f}{r['frames']:>8}{r['share']:>10.1%}{r['p50_ms']:>9.2f}"
              f"{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}")
    for name in ("collecting", "adapting"):
        r = res["collect_and_adapt_30hz"].get(name)
        if r:
            print(f"{name:<12}{r['rate_hz']:>9.1f}{r['frames']:>8}{r['share']:>10.1%}{r['p50_ms']:>9.2f}"
                  f"{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}")
    print(f"max sustained rate ({result['sustained_means']}): {result['max_sustained_rate_hz']} Hz; "
          f"closed loop {res['closed_loop']['rate_hz']:.1f} Hz")
    verdict = "met" if result["meets_targets"] else "NOT met"
    print(f"targets at 30 Hz: p50 <= {TARGETS['p50_ms']:g} ms, p99 <= {TARGETS['p99_ms']:g} ms -> {verdict} "
          f"(1-min load average {result['machine']['load_avg_1min']:.1f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
