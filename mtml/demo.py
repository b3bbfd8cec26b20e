"""`make demo`: sim_camera -> perception_node -> a client, each in its own process, on a private ROS domain.

The client measures the four outputs against the camera's ground truth in a training environment, switches the
camera to an unseen test environment, measures again, collects K labelled frames through the node's collect
service, calls adapt, and measures the same test frames once more. It prints a before/after table and writes
PNG panels (RGB | depth | normals | VP | class, prediction above ground truth) and results.json to out/demo/.

    .venv/bin/python -m mtml.demo [--test-env corridor_neon] [--shots 8] [--model DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from mtml.ros_env import ros_env

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "perception.yaml"
EVAL_SEED = 1000  # evaluation frames are seeds EVAL_SEED.. of an environment; support frames start at 0
NODE = "/perception_node"
CAMERA = "/camera/sim_camera"
ROWS = (  # (task, metric key, label, better)
    ("depth", "abs_rel", "depth AbsRel", "lower"),
    ("depth", "rmse", "depth RMSE (m)", "lower"),
    ("depth", "delta_1.25_pct", "depth delta<1.25 (%)", "higher"),
    ("normals", "angle_mean", "normals mean angle (deg)", "lower"),
    ("normals", "within_22.5deg_pct", "normals within 22.5 deg (%)", "higher"),
    ("vp", "angle_mean", "VP mean angle (deg)", "lower"),
    ("vp", "within_10deg_pct", "VP within 10 deg (%)", "higher"),
    ("class", "acc_pct", "scene class accuracy (%)", "higher"),
)


# -- orchestrator (no rclpy in this process) ---------------------------------------------------------------------------
def random_model(out: Path) -> Path:
    """An export of an untrained model (used only while the shipped default is missing)."""
    from mtml_core.backends.manifest import load_manifest

    target = out / "untrained_model"
    try:
        load_manifest(target)
        return target
    except (FileNotFoundError, ValueError):
        pass
    import torch

    from mtml_core.config import ModelConfig
    from mtml_core.export import export_model
    from mtml_core.model import MultiTaskModel

    torch.manual_seed(0)
    export_model(MultiTaskModel(ModelConfig()), target)
    return target


def pick_model(args: argparse.Namespace, out: Path) -> tuple[Path, bool]:
    """(export to serve, trained?)."""
    from mtml.params import DEFAULT_MODEL

    if args.model:
        return Path(args.model), True
    if (DEFAULT_MODEL / "manifest.json").is_file() or (DEFAULT_MODEL / "model.safetensors").is_file():
        return DEFAULT_MODEL, True  # a checkpoint: the node exports it once (cached)
    print(f"demo: WARNING: no shipped model in {DEFAULT_MODEL}; serving an UNTRAINED model (random weights), so "
          "the errors below only show the pipeline working", flush=True)
    return random_model(out), False


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child in its own process group, output to ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGINT the child's group (clean Ctrl-C), SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def orchestrate(args: argparse.Namespace) -> int:
    """Start camera, node and client; return the client's exit status."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, trained = pick_model(args, out)
    domain = args.domain if args.domain is not None else 1 + os.getpid() % 100
    try:
        env = ros_env(domain)  # LOCALHOST discovery, this domain, the 16 MiB SHM profile, the workspace overlay
    except FileNotFoundError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    env["PYTHONUNBUFFERED"] = "1"
    py = sys.executable
    print(f"demo: ROS_DOMAIN_ID={domain}, discovery {env['ROS_AUTOMATIC_DISCOVERY_RANGE']}, Fast DDS profile "
          f"{env['FASTRTPS_DEFAULT_PROFILES_FILE']}; model {model}; logs in {out}", flush=True)
    camera = start([py, "-m", "mtml.sim_camera", "--ros-args", "-r", "__ns:=/camera",
                    "-p", f"environment:={args.train_env}", "-p", f"rate:={args.rate}", "-p", f"width:={args.width}",
                    "-p", f"height:={args.height}", "-p", f"seed:={EVAL_SEED}", "-p", f"frames:={args.frames}"],
                   env, out / "sim_camera.log")
    node = start([py, "-m", "mtml.perception_node", "--ros-args", "--params-file", str(PARAMS_FILE),
                  "-p", f"model:={model}", "-p", f"profile_dir:={out / 'profiles'}", "-p", f"shots:={args.shots}",
                  "-p", "collect_rate:=0.0", "-p", "diagnostics_period:=0.5",
                  "-r", "image:=/camera/image", "-r", "depth_label:=/camera/depth",
                  "-r", "camera_info:=/camera/camera_info", "-r", "vp_label:=/camera/ground_truth/vanishing_points"],
                 env, out / "perception_node.log")
    client_argv = [py, "-m", "mtml.demo", "--client", "--out", str(out), "--train-env", args.train_env,
                   "--test-env", args.test_env, "--frames", str(args.frames), "--shots", str(args.shots)]
    client = subprocess.Popen(client_argv + ([] if trained else ["--untrained"]), env=env, cwd=ROOT,
                              start_new_session=True)
    try:
        code = client.wait(args.timeout)
    except subprocess.TimeoutExpired:
        print(f"demo: error: not finished after {args.timeout} s", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        for proc in (client, node, camera):
            stop(proc)
    if code != 0:
        for name in ("perception_node", "sim_camera"):
            tail = (out / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
            print(f"--- {name}.log (last lines)\n" + "\n".join(tail), file=sys.stderr)
    return code


# -- client (a ROS process) --------------------------------------------------------------------------------------------
class Recorder:
    """Camera frames, ground truth and node outputs by stamp (the newest ``keep`` stamps)."""

    FIELDS = ("rgb", "gt_depth", "gt_normals", "gt_vp", "gt_class", "K", "depth", "normals", "vp", "scores")

    def __init__(self, node: Any, keep: int = 120) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from mtml_interfaces.msg import SceneClass, VanishingPoints
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from mtml.image_conv import depth_from_msg, normals_from_msg, rgb_from_msg
        from mtml.messages import k_from_camera_info

        self.keep = keep
        self.frames: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.diag: dict[str, str] = {}
        sensor, reliable = qos_profile_sensor_data, QoSProfile(depth=10)
        subs = [
            ("/camera/image", Image, sensor, "rgb", rgb_from_msg),
            ("/camera/depth", Image, sensor, "gt_depth", depth_from_msg),
            ("/camera/camera_info", CameraInfo, sensor, "K", lambda m: k_from_camera_info(m)[0]),
            ("/camera/ground_truth/normals", Image, reliable, "gt_normals", normals_from_msg),
            ("/camera/ground_truth/vanishing_points", VanishingPoints, reliable, "gt_vp", self._dirs),
            # the world's category is family/style; the model names the place type, the family
            ("/camera/ground_truth/scene", SceneClass, reliable, "gt_class", lambda m: m.label.split("/")[0]),
            (f"{NODE}/depth", Image, reliable, "depth", depth_from_msg),
            (f"{NODE}/normals", Image, reliable, "normals", normals_from_msg),
            (f"{NODE}/vanishing_points", VanishingPoints, reliable, "vp", self._dirs),
            (f"{NODE}/scene", SceneClass, reliable, "scores", lambda m: (list(m.labels), np.array(m.scores))),
        ]
        for topic, cls, qos, key, conv in subs:
            node.create_subscription(cls, topic, lambda m, k=key, f=conv: self._add(m, k, f), qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, reliable)

    @staticmethod
    def _dirs(msg: Any) -> np.ndarray:
        return np.array([[d.x, d.y, d.z] for d in msg.directions], np.float32)

    def _add(self, msg: Any, key: str, conv: Any) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        rec = self.frames.setdefault(stamp, {"arrival": time.monotonic()})
        rec[key] = conv(msg)
        while len(self.frames) > self.keep:
            self.frames.popitem(last=False)

    def _diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name == f"mtml: {NODE}":  # the node names its status by its fully qualified name
                self.diag = {kv.key: kv.value for kv in status.values}

    def complete_since(self, t: float) -> list[dict[str, Any]]:
        """Frames that arrived after monotonic time ``t`` with everything recorded, oldest first."""
        return [r for r in list(self.frames.values()) if r["arrival"] > t and all(k in r for k in self.FIELDS)]


def image_key(rgb: np.ndarray) -> str:
    """Identity of a rendered frame (the camera cycles through the same evaluation frames)."""
    return hashlib.sha1(rgb.tobytes()).hexdigest()


def evaluate(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """mtml_core.metrics of the node's outputs against the ground truth, at the network's output size."""
    from mtml_core import metrics
    from mtml_core.data.sample import Frame
    from mtml_core.preprocess import resize_frame

    size = records[0]["depth"].shape
    gts = [resize_frame(Frame(rgb=r["rgb"], depth=r["gt_depth"], normals=r["gt_normals"]), size) for r in records]
    names = sorted({r["gt_class"] for r in records} | {r["scores"][0][int(np.argmax(r["scores"][1]))]
                                                       for r in records})
    pred_class = [names.index(r["scores"][0][int(np.argmax(r["scores"][1]))]) for r in records]
    return {
        "depth": metrics.depth_metrics(np.stack([r["depth"] for r in records]), np.stack([g.depth for g in gts])),
        "normals": metrics.normals_metrics(np.stack([r["normals"] for r in records]).transpose(0, 3, 1, 2),
                                           np.stack([g.normals for g in gts]).transpose(0, 3, 1, 2)),
        "vp": metrics.vp_metrics(np.stack([r["vp"] for r in records]), np.stack([r["gt_vp"] for r in records])),
        "class": metrics.class_metrics(np.array(pred_class), np.array([names.index(r["gt_class"]) for r in records])),
    }


def panels(records: list[dict[str, Any]]) -> np.ndarray:
    """For each record: the prediction's panel above the ground truth's."""
    from mtml.messages import panel

    rows = []
    for r in records:
        labels, scores = r["scores"]
        rows.append(panel(r["rgb"], r["depth"], r["normals"], r["vp"], r["K"], scores, labels))
        rows.append(panel(r["rgb"], r["gt_depth"], r["gt_normals"], r["gt_vp"], r["K"], np.ones(1),
                          [f"truth: {r['gt_class']}"]))
    return np.concatenate(rows, axis=0)


class DemoClient:
    """The demo's ROS side: services, camera parameters, measurements."""

    def __init__(self) -> None:
        import rclpy

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node("mtml_demo_client")
        self.rec = Recorder(self.node)
        self.clients: dict[str, Any] = {}

    def spin_until(self, done: Any, timeout: float, what: str) -> None:
        """Process callbacks until ``done()``; RuntimeError naming ``what`` after ``timeout`` s."""
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.rclpy.spin_once(self.node, timeout_sec=0.05)

    def call(self, name: str, srv: Any, timeout: float = 30.0, **fields: Any) -> Any:
        """Call a service and return its response."""
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv, name)
        cli = self.clients[name]
        self.spin_until(lambda: cli.service_is_ready(), 30.0, f"service {name}")
        future = cli.call_async(srv.Request(**fields))
        self.spin_until(future.done, timeout, f"the answer of {name}")
        return future.result()

    def camera(self, **values: Any) -> None:
        """Set sim_camera parameters (environment, seed, frames)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        res = self.call(f"{CAMERA}/set_parameters", SetParameters,
                        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        bad = [r.reason for r in res.results if not r.successful]
        if bad:
            raise RuntimeError(f"sim_camera refused {values}: {bad}")

    def measure(self, n: int, timeout: float = 40.0) -> list[dict[str, Any]]:
        """The next ``n`` distinct camera frames with their outputs and ground truth, in camera order."""
        t0 = time.monotonic() + 0.3  # frames from before a camera switch are still in flight
        found: dict[str, dict[str, Any]] = {}

        def enough() -> bool:
            for r in self.rec.complete_since(t0):
                found.setdefault(image_key(r["rgb"]), r)
            return len(found) >= n

        self.spin_until(enough, timeout, f"{n} evaluated frames")
        return list(found.values())[:n]

    def close(self) -> None:
        """Leave ROS."""
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def table(results: dict[str, dict[str, dict[str, float]]], columns: list[tuple[str, str]]) -> str:
    """Rows ROWS, one column per (key, title)."""
    width = 30
    lines = [f"{'metric':<{width}}" + "".join(f"{title:>22}" for _, title in columns)]
    for task, key, label, better in ROWS:
        arrow = "(lower better)" if better == "lower" else "(higher better)"
        cells = "".join(f"{results[c][task][key]:>22.3f}" for c, _ in columns)
        lines.append(f"{label:<{width}}{cells}   {arrow}")
    return "\n".join(lines)


def run_client(args: argparse.Namespace) -> int:
    """The measurement scenario; prints the table and writes out/demo/."""
    import cv2
    from mtml_interfaces.srv import Adapt, Collect

    out = Path(args.out)
    client = DemoClient()
    try:
        client.spin_until(lambda: len(client.rec.complete_since(0.0)) > 0, 90.0, "the node's first outputs")
        print(f"demo: node serving; measuring {args.frames} frames of the training environment {args.train_env}",
              flush=True)
        results = {"train": evaluate(client.measure(args.frames))}
        client.camera(environment=args.test_env)
        print(f"demo: camera switched to the unseen environment {args.test_env}", flush=True)
        before = client.measure(args.frames)
        results["before"] = evaluate(before)
        category = before[0]["gt_class"]
        # the support set: the K frames 0..K-1 (the evaluated ones start at EVAL_SEED), every one of them collected
        client.camera(seed=0, frames=args.shots)
        r = client.call(f"{NODE}/collect", Collect, environment=args.test_env, start=True, class_label=category)
        if not r.success:
            raise RuntimeError(f"collect refused: {r.message}")
        seen: list[str] = []

        def collected() -> bool:
            seen.append(client.rec.diag.get("adaptation_state", ""))
            return any(s.startswith("collecting") for s in seen) and seen[-1] == "idle"

        client.spin_until(collected, 60.0, f"{args.shots} collected frames")
        print(f"demo: collected {args.shots} labelled frames (depth, camera_info, vanishing directions, class "
              f"{category!r}); adapting ...", flush=True)
        ad = client.call(f"{NODE}/adapt", Adapt, timeout=150.0, environment=args.test_env, inner_steps=0)
        print(f"demo: adapt: {'accepted' if ad.success else 'REJECTED'}: {ad.message}", flush=True)
        client.camera(seed=EVAL_SEED, frames=args.frames)
        after = {image_key(r["rgb"]): r for r in client.measure(args.frames)}
        paired = [after[image_key(r["rgb"])] for r in before]
        results["after"] = evaluate(paired)
    except RuntimeError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()

    columns = [("train", f"train {args.train_env}"), ("before", f"{args.test_env} before"),
               ("after", f"{args.test_env} after")]
    print(f"\nErrors against the camera's ground truth ({args.frames} frames per column; the same test frames "
          f"before and after adapting on {args.shots} other frames):\n" + table(results, columns))
    if args.untrained:
        print("(untrained model: the shipped default was missing)")
    print("scene class: the place type (corridor, room, hall, street, warehouse, plaza) the model names before and "
          "after adapting; the collected frames are labelled with it too")
    for name, recs in (("before", before[:3]), ("after", paired[:3])):
        cv2.imwrite(str(out / f"{name}.png"), panels(recs)[..., ::-1])
    summary = {"train_env": args.train_env, "test_env": args.test_env, "frames": args.frames, "shots": args.shots,
               "untrained_model": args.untrained, "metrics": results,
               "adapt": {"success": ad.success, "message": ad.message, "seconds": ad.seconds,
                         "tasks": list(ad.tasks), "loss_before": list(ad.loss_before),
                         "loss_after": list(ad.loss_after)}}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"demo: wrote {out / 'before.png'}, {out / 'after.png'} and {out / 'results.json'}")
    return 0 if ad.success else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m mtml.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--train-env", default="corridor_office", help="training environment shown first")
    parser.add_argument("--test-env", default="corridor_neon", help="unseen environment to adapt to")
    parser.add_argument("--shots", type=int, default=8, help="labelled frames collected (K)")
    parser.add_argument("--frames", type=int, default=20, help="evaluation frames per measurement")
    parser.add_argument("--model", default="", help="export directory (default: the shipped default)")
    parser.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default: from the process id)")
    parser.add_argument("--timeout", type=float, default=170.0, help="seconds before the demo gives up")
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--untrained", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.shots < 1 or args.frames < 1:
        parser.error("--shots and --frames must be >= 1")
    return run_client(args) if args.client else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
