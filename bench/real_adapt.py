"""A robot adapting to a real room: 7-Scenes Kinect frames -> rosbag2 -> bag_camera -> perception_node.

    .venv/bin/python bench/real_adapt.py [--shots 10] [--steps 30] [--depth-optimizer adam|sgd] [--model DIR]
                                         [--in-process]

Writes the sequence's frames into rosbag2 (MCAP) files: rgb8 images, 16UC1 depth in millimetres (REP 118: 0 =
no measurement; 7-Scenes' 65535 becomes 0) and camera_info, one header per frame. Starts perception_node (the
shipped default unless --model) on a private ROS domain with LOCALHOST discovery, plays the support frames (K frames
from the first 50 of the sequence) with bag_camera while `~/collect` runs, then plays the evaluation frames (every
5th frame from 200 frames after the last support frame on: not copies of the support set) and records `~/depth` and
`~/normals`, calls `~/adapt`, and plays the evaluation frames again. camera_info cannot be replayed by bag_camera
(it replays one Image topic): the client republishes the bag's camera_info records (while the support frames play,
each in turn every 50 ms, matched by stamp in the node; during evaluation each image's record as it arrives). The
depth bag_camera loops until the support images are done (the node collects depth only while it has a publisher).
Metrics (mtml_core.metrics, at the network's output size, ground truth resized by nearest neighbour): depth
AbsRel, RMSE, delta<1.25 against the Kinect depth; normals angle against the pseudo ground truth of
mtml_core.data.pseudo_normals (derived from the depth, not measured) -- before adapting, after, and the trivial
baselines from the same support frames: per-pixel median of the support depths, the support's constant median,
the per-pixel mean of the support normals. Writes bench/results/real_adapt.json and bench/results/real_adapt.png
(per frame: RGB | ground truth | before | after, depth row above normals row).

--in-process measures the same frames with mtml_core.adapt.AdaptationEngine in this process instead of the node
(the JSON says which).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from mtml.demo import start, stop  # noqa: E402  (the demo's process-group start / Ctrl-C stop)
from mtml_core.backends.manifest import write_json_atomic  # noqa: E402
from mtml_core.data.loaders.rgbd_sequence import RGBDSequence  # noqa: E402
from mtml_core.inner_loop import OPTIMIZERS  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "rgbd" / "7scenes_redkitchen"
RESULTS = ROOT / "bench" / "results"
NODE = "/perception_node"
ENV = "redkitchen"
SUPPORT_SPAN = 50  # support frames come from the sequence's first 50 frames
GAP = 200  # evaluation frames start this many frames after the last support frame
STRIDE = 5  # every 5th frame of the rest is evaluated
BASE_NS = 1_700_000_000 * 10**9
FPS = 30.0  # 7-Scenes' Kinect rate (frame-NNNNNN counts frames at 30 Hz)
TOPICS = {"image": "/camera/image", "depth": "/camera/depth", "info": "/camera/camera_info"}
TARGETS = {"depth_abs_rel_after": 0.20, "depth_abs_rel_vs_best_baseline": 2 / 3, "normals_angle_mean_after": 25.0}


def pick_frames(n: int, shots: int) -> tuple[list[int], list[int]]:
    """(support indices: `shots` frames spread over the first SUPPORT_SPAN, evaluation indices: far from them)."""
    if not 1 <= shots <= SUPPORT_SPAN:
        raise ValueError(f"--shots must be in [1, {SUPPORT_SPAN}], got {shots}")
    support = sorted({int(round(x)) for x in np.linspace(0, SUPPORT_SPAN - 1, shots)})
    start = support[-1] + GAP
    if start >= n:
        raise ValueError(f"the sequence has {n} frames: none is {GAP} frames after the support set")
    return support, list(range(start, n, STRIDE))


def stamp_ns(seq: RGBDSequence, i: int) -> int:
    """The recorded stamp of frame i (its 7-Scenes frame number at 30 Hz, after a fixed base)."""
    return BASE_NS + int(round(int(seq.name(i).split("-")[-1]) / FPS * 1e9))


def write_bag(seq: RGBDSequence, indices: list[int], path: Path) -> None:
    """A rosbag2 (MCAP) with image, depth and camera_info of the given frames, one header per frame."""
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    Image, CameraInfo, Header, Time = (ts.types[t] for t in (
        "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    RegionOfInterest = ts.types["sensor_msgs/msg/RegionOfInterest"]
    K = seq.K.astype(np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {"image": writer.add_connection(TOPICS["image"], "sensor_msgs/msg/Image", typestore=ts),
                 "depth": writer.add_connection(TOPICS["depth"], "sensor_msgs/msg/Image", typestore=ts),
                 "info": writer.add_connection(TOPICS["info"], "sensor_msgs/msg/CameraInfo", typestore=ts)}
        for i in indices:
            t = stamp_ns(seq, i)
            header = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="kinect_rgb")
            rgb = seq.frame(i).rgb
            raw = cv2.imread(str(seq.items[i].depth), cv2.IMREAD_UNCHANGED)
            raw = np.where(raw == 65535, 0, raw).astype("<u2")
            h, w = rgb.shape[:2]
            msgs = {
                "info": (CameraInfo(header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
                                    k=K.ravel(), r=np.eye(3).ravel(), p=P.ravel(), binning_x=0, binning_y=0,
                                    roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                                         do_rectify=False)), "sensor_msgs/msg/CameraInfo"),
                "depth": (Image(header=header, height=h, width=w, encoding="16UC1", is_bigendian=0, step=w * 2,
                                data=raw.reshape(-1).view(np.uint8)), "sensor_msgs/msg/Image"),
                "image": (Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                                data=np.ascontiguousarray(rgb).reshape(-1)), "sensor_msgs/msg/Image"),
            }
            for key in ("info", "depth", "image"):  # the image last: its labels are already out when it arrives
                msg, kind = msgs[key]
                writer.write(conns[key], t, ts.serialize_cdr(msg, kind))


# -- orchestrator (no rclpy in this process) ---------------------------------------------------------------------------
def model_path(arg: str) -> Path:
    """The model to serve: --model, else the shipped default checkpoint."""
    from mtml.params import DEFAULT_MODEL

    return Path(arg) if arg else DEFAULT_MODEL


def run_node(args: argparse.Namespace, work: Path, support: list[int], evaluation: list[int]) -> dict[str, Any]:
    """Bags, node and client; returns the client's outputs (npz) and its adapt answer."""
    from mtml.ros_env import ros_env

    seq = RGBDSequence(args.data)
    write_bag(seq, support, work / "support_bag")
    write_bag(seq, evaluation, work / "eval_bag")
    domain = args.domain if args.domain is not None else 1 + os.getpid() % 100
    env = ros_env(domain)  # LOCALHOST discovery, this domain, the SHM profile, the workspace overlay
    env["PYTHONUNBUFFERED"] = "1"
    print(f"real_adapt: ROS_DOMAIN_ID={domain}, discovery {env['ROS_AUTOMATIC_DISCOVERY_RANGE']}; logs in {work}",
          flush=True)
    py = sys.executable
    node = start([py, "-m", "mtml.perception_node", "--ros-args", "--params-file", str(ROOT / "config" /
                  "perception.yaml"), "-p", f"model:={model_path(args.model)}",
                  "-p", f"export_cache_dir:={work / 'exports'}", "-p", f"profile_dir:={work / 'profiles'}",
                  "-p", f"shots:={len(support)}", "-p", "collect_rate:=0.0", "-p", "use_vp_label:=false",
                  "-p", "label_sync_tolerance:=0.001", "-p", f"depth_optimizer:={args.depth_optimizer}",
                  "-p", f"inner_steps:={args.steps}",
                  "-r", f"image:={TOPICS['image']}",
                  "-r", f"depth_label:={TOPICS['depth']}", "-r", f"camera_info:={TOPICS['info']}"],
                 env, work / "perception_node.log")
    client = subprocess.Popen([py, str(Path(__file__).resolve()), "--client", "--work", str(work),
                               "--shots", str(len(support)), "--rate", str(args.rate),
                               "--support-rate", str(args.support_rate)],
                              env=env, cwd=ROOT, start_new_session=True)
    try:
        code = client.wait(args.timeout)
    except subprocess.TimeoutExpired:
        code = -1
        print(f"real_adapt: client not finished after {args.timeout} s", file=sys.stderr)
    finally:
        stop(client)
        stop(node)
    if code != 0:
        tail = (work / "perception_node.log").read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"the ROS client failed (exit {code}); perception_node.log:\n" + "\n".join(tail))
    return json.loads((work / "client.json").read_text())


def run_in_process(args: argparse.Namespace, work: Path, support: list[int], evaluation: list[int]) -> dict[str, Any]:
    """The same measurement with AdaptationEngine in this process (no ROS)."""
    from mtml_core.adapt import AdaptationEngine, EngineConfig
    from mtml_core.export import export_run

    path = model_path(args.model)
    export = path if (path / "manifest.json").is_file() else export_run(path, work / "export")
    config = EngineConfig(steps=args.steps, depth_optimizer=args.depth_optimizer)
    engine = AdaptationEngine.from_export(export, "onnxruntime", config=config)
    seq = RGBDSequence(args.data)
    for i in support:
        fr = seq.frame(i)
        engine.add_frame(ENV, fr.rgb, depth=fr.depth, K=fr.K)

    def outputs() -> dict[str, list]:
        preds = [engine.infer(seq.frame(i).rgb) for i in evaluation]
        return {"depth": [p.depth for p in preds], "normals": [p.normals for p in preds]}

    before = outputs()
    result = engine.adapt(ENV, args.steps)
    after = outputs()
    np.savez_compressed(work / "outputs.npz", stamps=np.array([stamp_ns(seq, i) for i in evaluation]),
                        before_depth=np.stack(before["depth"]), before_normals=np.stack(before["normals"]),
                        after_depth=np.stack(after["depth"]), after_normals=np.stack(after["normals"]))
    return {"collected": len(support), "adapt": {
        "success": bool(result.accepted), "message": result.reason or "accepted", "seconds": float(result.seconds),
        "tasks": list(result.tasks), "loss_before": [float(s.loss_before) for s in result.tasks.values()],
        "loss_after": [float(s.loss_after) for s in result.tasks.values()]}}


# -- client (a ROS process) --------------------------------------------------------------------------------------------
class BenchClient:
    """Plays bags with bag_camera, republishes their camera_info, records the node's depth and normals by stamp."""

    def __init__(self, work: Path) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from rclpy.serialization import deserialize_message
        from rosbags.rosbag2 import Reader
        from sensor_msgs.msg import CameraInfo, Image

        from mtml.image_conv import depth_from_msg, normals_from_msg

        self.rclpy, self.work = rclpy, work
        rclpy.init()
        self.node = rclpy.create_node("real_adapt_client")
        self.infos: dict[str, dict[int, Any]] = {}
        for bag in ("support_bag", "eval_bag"):
            with Reader(work / bag) as reader:
                conns = [c for c in reader.connections if c.topic == TOPICS["info"]]
                self.infos[bag] = {t: deserialize_message(raw, CameraInfo)
                                   for _, t, raw in reader.messages(connections=conns)}
        self.info_pub = self.node.create_publisher(CameraInfo, TOPICS["info"], qos_profile_sensor_data)
        self.node.create_subscription(Image, TOPICS["image"], self._on_image, qos_profile_sensor_data)
        self.outputs: dict[str, dict[int, np.ndarray]] = {"depth": {}, "normals": {}}
        reliable = QoSProfile(depth=10)
        self.node.create_subscription(Image, f"{NODE}/depth", lambda m: self._keep("depth", m, depth_from_msg),
                                      reliable)
        self.node.create_subscription(Image, f"{NODE}/normals", lambda m: self._keep("normals", m, normals_from_msg),
                                      reliable)
        self.diag: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.clients: dict[str, Any] = {}

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith("perception_node"):  # "mtml: <node's full name>"
                self.diag = {kv.key: kv.value for kv in status.values}

    def wait_collected(self, shots: int, quiet: float = 10.0) -> None:
        """Until the node's collection has `shots` frames or its count has not moved for `quiet` seconds."""
        last, since = None, time.monotonic()
        end = since + 300.0
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
            state = self.diag.get("adaptation_state")
            if state is None:  # no diagnostics yet
                continue
            if not state.startswith("collecting"):
                return
            if state != last:
                last, since = state, time.monotonic()
            if state.endswith(f" {shots}/{shots}") or time.monotonic() - since > quiet:
                return

    @staticmethod
    def _stamp(msg: Any) -> int:
        return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec

    def _on_image(self, msg: Any) -> None:
        info = self.infos["eval_bag"].get(self._stamp(msg))
        if info is not None:
            self.info_pub.publish(info)

    def _keep(self, key: str, msg: Any, conv: Any) -> None:
        self.outputs[key][self._stamp(msg)] = conv(msg)

    def spin_until(self, done: Any, timeout: float, what: str) -> None:
        """Process callbacks until ``done()``; RuntimeError naming ``what`` after ``timeout`` s."""
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.rclpy.spin_once(self.node, timeout_sec=0.02)

    def call(self, name: str, srv: Any, timeout: float = 30.0, **fields: Any) -> Any:
        """Call one of the node's services and return its response."""
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv, f"{NODE}/{name}")
        cli = self.clients[name]
        self.spin_until(cli.service_is_ready, 900.0, f"service {NODE}/{name}")  # the node exports the model first
        future = cli.call_async(srv.Request(**fields))
        self.spin_until(future.done, timeout, f"the answer of {NODE}/{name}")
        return future.result()

    def play(self, bag: str, rate: float, with_depth: bool) -> None:
        """Replay a bag's images (and depth) with bag_camera processes; returns when the images are done."""
        def camera(topic: str, subscribers: int, name: str, loop: bool) -> subprocess.Popen:
            with open(self.work / f"bag_camera_{name}.log", "ab") as log:
                return subprocess.Popen(
                    [sys.executable, "-m", "mtml.bag_camera", "--ros-args", "-r", f"__node:=bag_camera_{name}",
                     "-p", f"bag:={self.work / bag}", "-p", f"topic:={topic}", "-p", f"rate:={rate}",
                     "-p", f"loop:={str(loop).lower()}", "-p", f"wait_subscribers:={subscribers}",
                     "-r", f"image:={topic}"],
                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        depth, timer = None, None
        if with_depth:
            # the support frames' camera_info records, one every 50 ms in turn, all the time the support bag plays:
            # the node keeps recent camera_infos by stamp, so each image finds its own however late it is processed
            cycle = itertools.cycle(self.infos[bag].values())
            timer = self.node.create_timer(0.05, lambda: self.info_pub.publish(next(cycle)))
            # depth first and in a loop until the images are done: the node keeps recent depth labels by stamp, and
            # collects a frame with depth only while a depth publisher exists
            depth = camera(TOPICS["depth"], 1, "depth", loop=True)
            self.spin_until(lambda: "replaying" in (self.work / "bag_camera_depth.log").read_text(errors="replace"),
                            300.0, "bag_camera (depth)")
        image = camera(TOPICS["image"], 2, "image", loop=False)  # node + this client (which republishes camera_info)
        try:
            self.spin_until(lambda: image.poll() is not None, 900.0, f"bag_camera playing {bag}")
            self._settle()
        finally:
            if depth is not None:
                stop(depth)
            if timer is not None:
                self.node.destroy_timer(timer)
        if image.returncode != 0:
            raise RuntimeError(f"bag_camera exited with {image.returncode}; see {self.work}/bag_camera_image.log")

    def _settle(self, seconds: float = 3.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.02)

    def record(self, bag: str, rate: float) -> dict[str, dict[int, np.ndarray]]:
        """The node's outputs for one replay of ``bag`` (images only), by stamp."""
        self.outputs = {"depth": {}, "normals": {}}
        self.play(bag, rate, with_depth=False)
        return self.outputs

    def close(self) -> None:
        """Leave ROS."""
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def run_client(args: argparse.Namespace) -> int:
    """Collect, measure, adapt, measure; writes outputs.npz and client.json into --work."""
    from mtml_interfaces.srv import Adapt, Collect

    work = Path(args.work)
    client = BenchClient(work)
    try:
        r = client.call("collect", Collect, environment=ENV, start=True)
        if not r.success:
            raise RuntimeError(f"collect refused: {r.message}")
        client.play("support_bag", args.support_rate, with_depth=True)
        client.wait_collected(args.shots)
        r = client.call("collect", Collect, environment=ENV, start=False)
        collected = int(r.frames)
        diag = dict(client.diag)
        print(f"real_adapt: collected {collected} of {args.shots} support frames ({r.message})", flush=True)
        before = client.record("eval_bag", args.rate)
        t0 = time.monotonic()
        ad = client.call("adapt", Adapt, timeout=300.0, environment=ENV, inner_steps=0)
        call_s = time.monotonic() - t0
        print(f"real_adapt: adapt {'accepted' if ad.success else 'REJECTED'}: {ad.message}", flush=True)
        after = client.record("eval_bag", args.rate)
    except RuntimeError as exc:
        print(f"real_adapt: error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    stamps = sorted(set(before["depth"]) & set(before["normals"]) & set(after["depth"]) & set(after["normals"]))
    np.savez_compressed(work / "outputs.npz", stamps=np.array(stamps, np.int64),
                        **{f"{w}_{k}": np.stack([d[k][s] for s in stamps]) for w, d in (("before", before),
                                                                                           ("after", after))
                           for k in ("depth", "normals")})
    (work / "client.json").write_text(json.dumps({
        "collected": collected, "node_diagnostics_after_collect": diag,
        "answered": {"before": len(before["depth"]), "after": len(after["depth"])},
        "adapt": {"success": bool(ad.success), "message": ad.message, "seconds": float(ad.seconds),
                  "service_call_seconds": call_s, "tasks": list(ad.tasks),
                  "loss_before": list(ad.loss_before), "loss_after": list(ad.loss_after)}}))
    return 0


# -- evaluation (no ROS) ----------------------------------------------------------------------------------------------
def evaluate(seq: RGBDSequence, support: list[int], evaluation: list[int], out: dict[str, np.ndarray]
             ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """Metrics of before / after / baselines on the evaluated frames; and the maps for the picture."""
    from mtml_core import metrics
    from mtml_core.data.pseudo_normals import pseudo_normals
    from mtml_core.data.sample import Frame
    from mtml_core.preprocess import resize_frame

    size = out["before_depth"].shape[1:3]
    by_stamp = {stamp_ns(seq, i): i for i in evaluation}
    frames = [by_stamp[int(s)] for s in out["stamps"]]

    def truth(i: int) -> Frame:
        fr = seq.frame(i)
        return resize_frame(fr.with_(normals=pseudo_normals(fr.depth, fr.K)), size)

    gts, sup = [truth(i) for i in frames], [truth(i) for i in support]
    gt_depth, gt_normals = np.stack([g.depth for g in gts]), np.stack([g.normals for g in gts])
    sup_depth, sup_normals = np.stack([g.depth for g in sup]), np.stack([g.normals for g in sup])
    constant = float(np.nanmedian(sup_depth))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels without any support label: filled below
        pixel_median = np.nanmedian(sup_depth, axis=0)
        mean_normal = np.nanmean(sup_normals, axis=0)
    pixel_median = np.where(np.isfinite(pixel_median), pixel_median, constant)
    overall = np.nanmean(sup_normals.reshape(-1, 3), axis=0)
    mean_normal = np.where(np.isfinite(mean_normal).all(-1, keepdims=True), mean_normal, overall)
    mean_normal /= np.linalg.norm(mean_normal, axis=-1, keepdims=True)
    n = len(frames)
    depth_preds = {"before": out["before_depth"], "after": out["after_depth"],
                   "baseline_pixel_median_of_support": np.repeat(pixel_median[None], n, 0),
                   "baseline_constant_support_median": np.full_like(gt_depth, constant)}
    normal_preds = {"before": out["before_normals"], "after": out["after_normals"],
                    "baseline_pixel_mean_of_support": np.repeat(mean_normal[None], n, 0)}
    res = {"depth": {k: metrics.depth_metrics(v, gt_depth) for k, v in depth_preds.items()},
           "normals": {k: metrics.normals_metrics(v.transpose(0, 3, 1, 2), gt_normals.transpose(0, 3, 1, 2))
                       for k, v in normal_preds.items()}}
    res["depth"]["baseline_constant_support_median"]["value_m"] = constant
    maps = {"rgb": np.stack([seq.frame(i).rgb for i in frames]), "gt_depth": gt_depth, "gt_normals": gt_normals,
            **{f"{k}_depth": out[f"{k}_depth"] for k in ("before", "after")},
            **{f"{k}_normals": out[f"{k}_normals"] for k in ("before", "after")}}
    return res, maps


def picture(maps: dict[str, np.ndarray], rows: list[int], path: Path, max_depth: float = 4.0) -> None:
    """Per chosen frame: RGB | ground truth | before | after, the depth row above the normals row."""
    import cv2

    h, w = 120, 160

    def depth_img(d: np.ndarray) -> np.ndarray:
        v = np.clip(np.nan_to_num(d, nan=0.0) / max_depth, 0, 1)
        img = cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
        img[~np.isfinite(d)] = 0
        return img

    def normals_img(n: np.ndarray) -> np.ndarray:
        img = ((np.nan_to_num(n) + 1) * 127.5).clip(0, 255).astype(np.uint8)
        img[~np.isfinite(n).all(-1)] = 0
        return img

    def cell(img: np.ndarray, text: str) -> np.ndarray:
        img = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_NEAREST)
        cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    blocks = []
    for r in rows:
        blocks.append(np.concatenate([cell(maps["rgb"][r], "RGB"), cell(depth_img(maps["gt_depth"][r]), "Kinect depth"),
                                      cell(depth_img(maps["before_depth"][r]), "before"),
                                      cell(depth_img(maps["after_depth"][r]), "after")], 1))
        blocks.append(np.concatenate([np.zeros((h, w, 3), np.uint8),
                                      cell(normals_img(maps["gt_normals"][r]), "pseudo-GT normals"),
                                      cell(normals_img(maps["before_normals"][r]), "before"),
                                      cell(normals_img(maps["after_normals"][r]), "after")], 1))
    cv2.imwrite(str(path), np.concatenate(blocks, 0)[..., ::-1])


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="bench/real_adapt.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="a 7-Scenes / TUM sequence folder")
    parser.add_argument("--shots", type=int, default=10, help="support frames collected (K)")
    parser.add_argument("--model", default="", help="checkpoint or export dir (default: the shipped default)")
    parser.add_argument("--rate", type=float, default=5.0, help="evaluation replay rate, frames/s")
    parser.add_argument("--support-rate", type=float, default=0.5, help="support replay rate, frames/s (slow: the "
                        "node must match every support frame with its labels)")
    parser.add_argument("--steps", type=int, default=30, help="inner steps (the node: its inner_steps parameter)")
    parser.add_argument("--depth-optimizer", choices=OPTIMIZERS, default="adam",
                        help="the depth head's inner loop (node parameter depth_optimizer)")
    parser.add_argument("--in-process", action="store_true", help="AdaptationEngine in this process, no ROS")
    parser.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default: from the process id)")
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds before the ROS client gives up")
    parser.add_argument("--work", default="", help="folder for bags and logs (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for real_adapt.json and real_adapt.png")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return run_client(args)
    seq = RGBDSequence(args.data)
    support, evaluation = pick_frames(len(seq), args.shots)
    work = Path(args.work or tempfile.mkdtemp(prefix="mtml_real_adapt_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    info = (run_in_process if args.in_process else run_node)(args, work, support, evaluation)
    with np.load(work / "outputs.npz") as z:
        out = {k: z[k] for k in z.files}
    if len(out["stamps"]) == 0:
        print("real_adapt: error: no evaluation frame was answered both before and after adapting", file=sys.stderr)
        return 1
    res, maps = evaluate(seq, support, evaluation, out)
    d, nrm = res["depth"], res["normals"]
    best = min(d["baseline_pixel_median_of_support"]["abs_rel"], d["baseline_constant_support_median"]["abs_rel"])
    summary = {
        "what": "adapting to a real room: 7-Scenes redkitchen Kinect frames, support from the start of the sequence, "
                "evaluation on frames >= 200 frames later",
        "mode": "in-process AdaptationEngine (no ROS)" if args.in_process else
                "rosbag2 (MCAP) -> bag_camera -> perception_node (~/collect, ~/adapt) -> client, separate processes",
        "data": str(Path(args.data).resolve()), "model": str(model_path(args.model)),
        "support_frames": [seq.name(i) for i in support], "collected": info["collected"],
        "eval_frames": len(out["stamps"]), "eval_frames_offered": len(evaluation),
        "eval_first_last": [seq.name(evaluation[0]), seq.name(evaluation[-1])],
        "min_frames_between_support_and_eval": evaluation[0] - support[-1],
        "resolution": list(out["before_depth"].shape[1:3]),
        "normals_ground_truth": "PSEUDO ground truth: mtml_core.data.pseudo_normals from the Kinect depth and K "
                                "(windowed plane fits), not measured",
        "depth_optimizer": args.depth_optimizer, "steps": args.steps,
        "adapt": info["adapt"], "answered": info.get("answered"),
        "node_diagnostics_after_collect": info.get("node_diagnostics_after_collect"), "metrics": res,
        "targets": TARGETS,
        "target_met": {"depth_abs_rel_after": d["after"]["abs_rel"] <= TARGETS["depth_abs_rel_after"],
                       "depth_abs_rel_vs_best_baseline": d["after"]["abs_rel"]
                       <= TARGETS["depth_abs_rel_vs_best_baseline"] * best,
                       "normals_angle_mean_after": nrm["after"]["angle_mean"] <= TARGETS["normals_angle_mean_after"]},
        "seconds_total": time.monotonic() - t0,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "real_adapt_in_process" if args.in_process else "real_adapt"
    write_json_atomic(out_dir / f"{name}.json", summary)
    n = len(out["stamps"])
    picture(maps, sorted({0, n // 2, n - 1}), out_dir / f"{name}.png")
    print(f"{'':<36}{'AbsRel':>8}{'RMSE m':>8}{'d<1.25%':>9}")
    for k, m in d.items():
        print(f"depth {k:<30}{m['abs_rel']:>8.3f}{m['rmse']:>8.3f}{m['delta_1.25_pct']:>9.1f}")
    for k, m in nrm.items():
        print(f"normals {k:<28} mean angle {m['angle_mean']:.1f} deg (pseudo ground truth)")
    print(f"adapt: {info['adapt']['message']}; wrote {out_dir / (name + '.json')} and {out_dir / (name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
