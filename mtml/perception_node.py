"""perception_node: scene class, depth, normals and vanishing points per frame; adapts to new environments.

Every camera frame gets all four outputs; a few labelled frames of a new environment adapt the model on request.

    perception_node --ros-args --params-file config/perception.yaml -r image:=/camera/image \
        -r depth_label:=/camera/depth -r camera_info:=/camera/camera_info

Thin adapter: messages in, `mtml_core.adapt.AdaptationEngine` calls, messages out. Every callback runs in one
executor thread except the adaptation itself, which runs in a worker thread of its own while the adapt service
(a coroutine in its own callback group) awaits it: frames keep flowing during an adaptation and the engine swaps
the adapted state in atomically. rclpy's MultiThreadedExecutor is not used: it delayed frames by up to 0.7 s
(bench/node_latency.py, closed loop). See docs/node.md for the topics and services.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from mtml_interfaces.msg import SceneClass, VanishingPoints
from mtml_interfaces.srv import Adapt, Collect, Profile, Recognize
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.task import Future
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, Image

from mtml import messages, params, spin
from mtml.image_conv import array_to_msg, depth_from_msg, rgb_from_msg
from mtml_core.adapt import AdaptationEngine, EngineConfig, check_name
from mtml_core.adapt.labels import check_class_name, check_vp
from mtml_core.backends.manifest import MANIFEST, sha256_file
from mtml_core.checkpoint import CONFIG, WEIGHTS
from mtml_core.export import export_run

PENDING_SECONDS = 1.0  # a frame to collect waits this long for its time-matched labels
WARN_EVERY = 5.0  # seconds between two warnings with the same reason
SWITCH_INTERVAL = 0.0005  # s, see main()
ADAPT_NICE = 10  # the adaptation worker thread yields the CPU to inference (and to the rest of the robot)


def _background_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux: nice is per thread); best effort elsewhere."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ADAPT_NICE)
    except (OSError, AttributeError):
        pass


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def resolve_model(value: str, cache_dir: str, log: Any) -> Path:
    """The export to serve for a `model` parameter ('' = the shipped default): an export directory or manifest as
    is; a checkpoint directory (model.safetensors + config.yaml, like the shipped default) exported once into
    ``cache_dir``, keyed by the checkpoint's checksums, and reused afterwards."""
    path = Path(os.path.expanduser(value)) if value else params.DEFAULT_MODEL
    if path.is_file() or (path / MANIFEST).is_file():
        return path
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise ValueError(f"parameter 'model': {path} is neither an export (no {MANIFEST}) nor a checkpoint "
                         f"({WEIGHTS} + {CONFIG})")
    key = f"{sha256_file(path / WEIGHTS)[:16]}-{sha256_file(path / CONFIG)[:8]}"
    target = Path(os.path.expanduser(cache_dir)) / key
    if (target / MANIFEST).is_file():
        log.info(f"checkpoint {path}: using the cached export {target}")
        return target
    log.info(f"checkpoint {path}: exporting it once to {target} (ONNX, takes a few seconds)")
    tmp = target.with_name(f"{key}.tmp-{os.getpid()}")
    try:
        export_run(path, tmp)
        tmp.rename(target)
    except OSError:
        if not (target / MANIFEST).is_file():  # else another process exported it meanwhile
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename
    return target


def build_engine(p: dict[str, Any], log: Any) -> AdaptationEngine:
    """The adaptation engine the parameters describe; ValueError names what does not fit."""
    opts: dict[str, Any] = {}
    if p["backend"] == "onnxruntime":
        opts = {"threads": p["threads"]}
    elif p["backend"] == "torch":
        opts = {"device": p["device"]}
    elif p["backend"] == "tensorrt":
        opts = {"precision": p["tensorrt.precision"], "force_rebuild": p["tensorrt.force_rebuild"]}
        if p["tensorrt.cache_dir"]:
            opts["cache_dir"] = os.path.expanduser(p["tensorrt.cache_dir"])
    config = EngineConfig(steps=p["inner_steps"], buffer_size=1000, switch_confidence=p["recognize_threshold"],
                          adapt_threads=p["adapt_threads"], adapt_workers=p["adapt_workers"])
    model = p["model"] or str(params.DEFAULT_MODEL)
    try:
        export = resolve_model(p["model"], p["export_cache_dir"], log)
        engine = AdaptationEngine.from_export(export, p["backend"], Path(os.path.expanduser(p["profile_dir"])),
                                              config, **opts)
    except (OSError, ImportError, RuntimeError) as exc:
        raise ValueError(f"cannot load model {model} with backend {p['backend']}: {exc}") from exc
    want = tuple(p["input_size"])
    if want != (0, 0) and want != engine.backend.input_hw:
        raise ValueError(f"parameter 'input_size': {list(want)} but the model was exported for "
                         f"{list(engine.backend.input_hw)}")
    engine.warmup()  # torch's and the runtime's one-time costs now, not in the middle of the first adaptation
    return engine


@dataclass
class Collecting:
    """An open collection: labels that apply to every frame, and frames waiting for their time-matched labels."""

    env: str
    class_name: str | None
    vp_dirs: np.ndarray | None
    last_stamp: int = -(10**18)
    pending: deque = field(default_factory=lambda: deque(maxlen=8))  # (stamp_ns, arrival, rgb)
    errors: int = 0
    last_error: str = ""


class PerceptionNode(Node):
    """Subscribes to camera frames, publishes the four outputs, serves collect/adapt/profiles/recognize."""

    def __init__(self) -> None:
        super().__init__("perception_node")
        self.p = params.declare(self)
        self.adapt_worker = ThreadPoolExecutor(1, "mtml-adapt", initializer=_background_priority)
        self.engine = build_engine(self.p, self.get_logger())
        self.add_post_set_parameters_callback(self._after_set)
        self.collecting: Collecting | None = None
        self.last_env: str | None = None
        self.adapting: str | None = None
        self.last_adapt = "none yet"
        self.infos: deque = deque(maxlen=30)  # (stamp_ns, (K, (H, W)))
        self.depth_labels: deque = deque(maxlen=30)  # (stamp_ns, Image)
        self.vp_labels: deque = deque(maxlen=30)  # (stamp_ns, (3, 3) directions)
        self.recent: deque = deque(maxlen=self.p["recognize_frames"])
        self.latencies: deque = deque(maxlen=300)  # (monotonic time, receive->publish s, stamp age s)
        self.counts = {"received": 0, "published": 0, "rejected": 0}
        self.last_processed = 0.0
        self.warned: dict[str, float] = {}

        sensor = QoSProfile(history=qos_profile_sensor_data.history, depth=1,
                            reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability)
        if self.p["use_depth_label"]:
            self.create_subscription(Image, "depth_label", self.on_depth_label, qos_profile_sensor_data)
        if self.p["use_camera_info"]:
            self.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos_profile_sensor_data)
        if self.p["use_vp_label"]:
            self.create_subscription(VanishingPoints, "vp_label", self.on_vp_label, QoSProfile(depth=10))
        # created after the label subscriptions: when an image and its camera_info are both waiting, the executor
        # (which takes subscriptions in creation order) takes the camera_info first
        self.create_subscription(Image, "image", self.on_image, sensor)
        out = QoSProfile(depth=2)
        self.pub_depth = self.create_publisher(Image, "~/depth", out)
        self.pub_normals = self.create_publisher(Image, "~/normals", out)
        self.pub_vp = self.create_publisher(VanishingPoints, "~/vanishing_points", out)
        self.pub_scene = self.create_publisher(SceneClass, "~/scene", out)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=5))
        self.create_service(Collect, "~/collect", self.on_collect)
        self.create_service(Profile, "~/profiles", self.on_profiles)
        self.create_service(Recognize, "~/recognize", self.on_recognize)
        # one adaptation at a time; its coroutine waits for the worker thread without holding up other callbacks
        self.create_service(Adapt, "~/adapt", self.on_adapt, callback_group=MutuallyExclusiveCallbackGroup())
        self.adapt_done = self.create_guard_condition(lambda: None)  # wakes the executor when the worker is done
        self.collect_timer = self.create_timer(0.05, self.collect_step)
        self.collect_timer.cancel()
        self.diag_timer = self.create_timer(self.p["diagnostics_period"], self.publish_diagnostics)
        self.recognize_timer = self.create_timer(self.p["recognize_period"], self.auto_recognize)
        man = self.engine.backend.manifest
        # The model, torch and ROS objects live as long as the node: keep the collector from walking them (a full
        # collection holds the GIL, i.e. stalls inference, for tens of ms).
        gc.freeze()
        self.get_logger().info(f"serving {man.root} ({self.engine.backend.name}, input {man.input_hw[1]}x"
                               f"{man.input_hw[0]}, tasks {', '.join(self.engine.tasks)}); profiles in "
                               f"{self.engine.profiles.root}; node code in {Path(__file__).parent}")

    # -- helpers -------------------------------------------------------------------------------------------------------
    def warn(self, reason: str) -> None:
        """Log a warning, at most once per WARN_EVERY seconds for the same reason."""
        now = time.monotonic()
        if now - self.warned.get(reason, -WARN_EVERY) >= WARN_EVERY:
            self.warned[reason] = now
            self.get_logger().warning(reason)

    def _after_set(self, changed: list) -> None:
        """Apply parameters that were accepted while running."""
        for prm in changed:
            self.p[prm.name] = prm.value
            if prm.name == "recognize_frames":
                self.recent = deque(self.recent, maxlen=prm.value)
            elif prm.name == "recognize_threshold":
                self.engine.config.switch_confidence = prm.value
            elif prm.name == "inner_steps":
                self.engine.config.steps = prm.value
            elif prm.name == "diagnostics_period":
                self.diag_timer.timer_period_ns = int(prm.value * 1e9)
                self.diag_timer.reset()
            elif prm.name == "recognize_period":
                self.recognize_timer.timer_period_ns = int(prm.value * 1e9)
                self.recognize_timer.reset()

    def camera_k(self, stamp: int, hw: tuple[int, int]) -> np.ndarray | None:
        """K of the camera_info with the image's stamp (else the latest one), when it is for images of size ``hw``."""
        if not self.infos:
            return None
        K, size = self._match(self.infos, stamp) or self.infos[-1][1]
        if size != hw:
            self.warn(f"camera_info is for {size[1]}x{size[0]} images but the image is {hw[1]}x{hw[0]}: ignored")
            return None
        return K

    # -- inference -----------------------------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        """Run the model on a frame and publish all outputs with the frame's header."""
        t0 = time.monotonic()
        self.counts["received"] += 1
        if self.p["max_rate"] > 0 and t0 - self.last_processed < 1.0 / self.p["max_rate"]:
            return
        try:
            rgb = rgb_from_msg(msg)
        except ValueError as exc:
            self.counts["rejected"] += 1
            self.warn(f"image rejected: {exc}")
            return
        self.last_processed = t0
        try:
            pred = self.engine.infer(rgb)
        except ValueError as exc:
            self.counts["rejected"] += 1
            self.warn(f"image rejected by the model: {exc}")
            return
        hw = rgb.shape[:2]
        stamp = stamp_ns(msg.header.stamp)
        K = self.camera_k(stamp, hw)
        size = hw if self.p["output_resolution"] == "input" else None
        header = msg.header
        self.pub_depth.publish(messages.depth_msg(pred.depth, header, size))
        self.pub_normals.publish(messages.normals_msg(pred.normals, header, size))
        self.pub_vp.publish(messages.vp_msg(pred.vp_dirs, header, K))
        self.pub_scene.publish(messages.scene_msg(pred.class_scores, pred.class_names, header))
        t1 = time.monotonic()
        self.counts["published"] += 1
        age = time.time() - stamp * 1e-9
        self.latencies.append((t1, t1 - t0, age))
        if self.p["publish_overlay"] and self.pub_overlay.get_subscription_count() > 0:
            picture = messages.panel(rgb, pred.depth, pred.normals, pred.vp_dirs, K, pred.class_scores,
                                     pred.class_names, self.p["overlay_max_depth"], height=min(240, hw[0]))
            self.pub_overlay.publish(array_to_msg(picture, "rgb8", header))
        self.recent.append(rgb)
        c = self.collecting
        if c is not None:
            rate = self.p["collect_rate"]
            if rate == 0 or stamp - c.last_stamp >= 1e9 / rate:
                c.last_stamp = stamp
                c.pending.append((stamp, t0, np.array(rgb)))

    # -- labels --------------------------------------------------------------------------------------------------------
    def on_depth_label(self, msg: Image) -> None:
        """Keep recent depth labels for time matching (decoded when a frame is collected)."""
        self.depth_labels.append((stamp_ns(msg.header.stamp), msg))

    def on_vp_label(self, msg: VanishingPoints) -> None:
        """Keep recent vanishing-direction labels for time matching."""
        dirs = np.array([[d.x, d.y, d.z] for d in msg.directions], np.float32)
        self.vp_labels.append((stamp_ns(msg.header.stamp), dirs))

    def on_camera_info(self, msg: CameraInfo) -> None:
        """Keep recent valid intrinsics for time matching."""
        try:
            self.infos.append((stamp_ns(msg.header.stamp), messages.k_from_camera_info(msg)))
        except ValueError as exc:
            self.warn(str(exc))

    def _match(self, store: deque, stamp: int) -> Any:
        """The label closest in time to ``stamp`` within the tolerance, or None."""
        tol = self.p["label_sync_tolerance"] * 1e9
        best = min(list(store), key=lambda item: abs(item[0] - stamp), default=None)
        return best[1] if best is not None and abs(best[0] - stamp) <= tol else None

    def collect_step(self) -> None:
        """Turn collected frames whose labels have arrived into support frames (timer while collecting)."""
        c = self.collecting
        if c is None:
            return
        todo, c.pending = list(c.pending), deque(maxlen=c.pending.maxlen)
        need_depth = self.p["use_depth_label"] and self.count_publishers(self._resolved("depth_label")) > 0
        need_vp = c.vp_dirs is None and self.p["use_vp_label"] and self.count_publishers(
            self._resolved("vp_label")) > 0
        # normals come from depth + the K of the frame's own camera_info (intrinsics may change frame to frame)
        need_k = need_depth and self.p["use_camera_info"] and self.count_publishers(self._resolved("camera_info")) > 0
        keep = []
        for stamp, arrival, rgb in todo:
            if self.collecting is not c:  # stopped (enough frames, or by request) meanwhile
                return
            labels = {"depth_label": self._match(self.depth_labels, stamp) if need_depth else None,
                      "vp_label": self._match(self.vp_labels, stamp) if need_vp else c.vp_dirs,
                      "camera_info": self._match(self.infos, stamp) if need_k else None}
            missing = [k for k, needed in (("depth_label", need_depth), ("vp_label", need_vp), ("camera_info", need_k))
                       if needed and labels[k] is None]
            if missing:
                if time.monotonic() - arrival < PENDING_SECONDS:
                    keep.append((stamp, arrival, rgb))
                else:
                    self._collect_error(c, f"no {' / '.join(missing)} within {self.p['label_sync_tolerance']} s of "
                                           f"the image stamp: frame not collected")
                continue
            info = labels["camera_info"]
            if info is not None and info[1] != rgb.shape[:2]:
                self._collect_error(c, f"camera_info is for {info[1][1]}x{info[1][0]} images but the image is "
                                       f"{rgb.shape[1]}x{rgb.shape[0]}: frame not collected")
                continue
            self._add(c, rgb, labels["depth_label"], None if info is None else info[0], labels["vp_label"])
        c.pending.extendleft(reversed(keep))

    def _resolved(self, topic: str) -> str:
        return self.resolve_topic_name(topic)

    def _collect_error(self, c: Collecting, reason: str) -> None:
        c.errors += 1
        c.last_error = reason
        self.warn(f"collect {c.env}: {reason}")

    def _add(self, c: Collecting, rgb: np.ndarray, depth_label: Image | None, K: np.ndarray | None,
             vp: np.ndarray | None) -> None:
        """Hand one labelled frame to the engine; stop collecting once `shots` frames are held."""
        try:
            depth = None if depth_label is None else depth_from_msg(depth_label)
            if depth is None and vp is None and c.class_name is None:
                raise ValueError("frame has no label (no depth_label, vp_label, class label or vanishing directions)")
            n = self.engine.add_frame(c.env, rgb, depth=depth, K=K if depth is not None else None,
                                      class_name=c.class_name, vp_dirs=vp)
        except ValueError as exc:
            self._collect_error(c, f"frame rejected: {exc}")
            return
        if n >= self.p["shots"]:
            self._stop_collecting(c)
            self.get_logger().info(f"collected {n} frames for {c.env}; collection stopped")

    def _stop_collecting(self, c: Collecting) -> None:
        if self.collecting is c:
            self.collecting = None
            self.collect_timer.cancel()

    # -- services ------------------------------------------------------------------------------------------------------
    def _not_adapting(self) -> None:
        """ValueError while an adaptation runs (loading a profile would wait for it, holding up inference)."""
        if self.adapting is not None:
            raise ValueError(f"adapting {self.adapting} right now: load a profile when it is done")

    async def _in_worker(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the adaptation worker thread and await it without blocking the executor."""
        future = Future()

        def work() -> None:
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # handed to the awaiting service callback
                future.set_exception(exc)
            self.adapt_done.trigger()

        self.adapt_worker.submit(work)
        return await future

    def on_collect(self, req: Collect.Request, res: Collect.Response) -> Collect.Response:
        """Start (clearing the environment's frames) or stop collecting labelled frames."""
        try:
            env = check_name(req.environment)
            class_name = check_class_name(req.class_label) if req.class_label else None
            vp = check_vp(np.asarray(req.vanishing_directions, np.float32).reshape(3, 3)) if req.has_vanishing \
                else None
        except ValueError as exc:
            res.success, res.message = False, str(exc)
            return res
        if not req.start:
            c = self.collecting
            if c is None or c.env != env:
                res.success, res.message = False, f"not collecting for {env!r}"
            else:
                self.collect_step()
                self._stop_collecting(c)
                res.success = True
                res.message = f"stopped collecting for {env}" + (f" (last problem: {c.last_error})"
                                                                 if c.last_error else "")
            res.frames = self.engine.buffer.count(env)
            return res
        if self.adapting == env:
            res.success, res.message = False, f"adapting {env!r} right now: collect again when it is done"
            return res
        self.engine.buffer.clear(env)
        self.collecting = Collecting(env, class_name, vp)
        self.last_env = env
        self.collect_timer.reset()
        res.success, res.frames = True, 0
        res.message = f"collecting up to {self.p['shots']} frames for {env}"
        return res

    async def on_adapt(self, req: Adapt.Request, res: Adapt.Response) -> Adapt.Response:
        """Adapt to the collected frames in the worker thread; inference keeps running meanwhile."""
        steps = req.inner_steps or self.p["inner_steps"]
        try:
            if not (req.environment or self.last_env):
                raise ValueError("no environment given and none collected yet")
            env = check_name(req.environment or self.last_env)
            if steps < 0:
                raise ValueError(f"inner_steps must be >= 0, got {steps}")
        except ValueError as exc:
            res.success, res.message = False, str(exc)
            return res
        c = self.collecting
        if c is not None and c.env == env:
            self._stop_collecting(c)
        self.adapting = env
        self.get_logger().info(f"adapting {env}: {self.engine.buffer.count(env)} frames, {steps} steps")
        try:
            result = await self._in_worker(self.engine.adapt, env, steps)
        except ValueError as exc:
            res.success, res.message = False, str(exc)
            return res
        finally:
            self.adapting = None
        res.success, res.seconds = result.accepted, float(result.seconds)
        res.tasks = list(result.tasks)
        res.loss_before = [float(s.loss_before) for s in result.tasks.values()]
        res.loss_after = [float(s.loss_after) for s in result.tasks.values()]
        if result.accepted:
            shots = max((s.shots for s in result.tasks.values()), default=0)
            res.message = (f"adapted {', '.join(result.tasks)} to {env} from {shots} frames, {steps} steps, in "
                           f"{result.seconds:.1f} s" + (f"; skipped {result.skipped}" if result.skipped else ""))
        else:
            res.message = result.reason
        self.last_adapt = f"{env}: {'accepted' if result.accepted else 'rejected'} ({res.message})"
        self.get_logger().info(f"adapt {self.last_adapt}")
        return res

    def on_profiles(self, req: Profile.Request, res: Profile.Response) -> Profile.Response:
        """save / load / list / delete environment profiles."""
        cmd = req.command
        try:
            # a name is checked before anything else (SAVE may leave it empty: the adapted environment's name)
            name = check_name(req.name) if req.name or cmd in (Profile.Request.LOAD, Profile.Request.DELETE) else None
            if cmd == Profile.Request.SAVE:
                path = self.engine.save_profile(name)
                res.message = f"saved {path.stem} to {path.parent}"
            elif cmd == Profile.Request.LOAD:
                self._not_adapting()
                self.engine.load_profile(name)
                res.message = f"serving profile {name}"
            elif cmd == Profile.Request.DELETE:
                self.engine.delete_profile(name)
                res.message = f"deleted profile {name}"
            elif cmd == Profile.Request.LIST:
                res.message = "profiles listed"
            else:
                raise ValueError(f"unknown command {cmd!r} (save, load, list, delete)")
            res.success = True
        except (ValueError, FileNotFoundError, OSError) as exc:
            res.success, res.message = False, str(exc)
        res.names = [s["name"] for s in self.engine.list_profiles()]
        return res

    def on_recognize(self, req: Recognize.Request, res: Recognize.Response) -> Recognize.Response:
        """Which saved profile matches the recent frames (optionally load it)."""
        frames = list(self.recent)
        if not frames:
            res.success, res.message = False, "no camera frames received yet"
            return res
        try:
            if req.switch_profile:
                self._not_adapting()
            r = self.engine.recognize(frames, switch=req.switch_profile)
        except (ValueError, OSError) as exc:
            res.success, res.message = False, str(exc)
            return res
        res.success = r.best is not None
        res.best, res.confidence, res.switched = r.best or "", float(r.confidence), bool(r.switched)
        res.message = ("no saved profile to compare with" if r.best is None else
                       f"best {r.best} (confidence {r.confidence:.2f}, similarity {r.similarity:.3f}"
                       f"{', loaded' if r.switched else ''}) from {len(frames)} frames")
        return res

    def auto_recognize(self) -> None:
        """Timer: recognise the environment and load its profile when confident (auto_recognize)."""
        if not self.p["auto_recognize"] or not self.recent or self.adapting is not None:
            return
        try:
            r = self.engine.recognize(list(self.recent), switch=True)
        except (ValueError, OSError) as exc:
            self.warn(f"auto-recognition: {exc}")
            return
        if r.switched:
            self.get_logger().info(f"recognised {r.best} (confidence {r.confidence:.2f}): profile loaded")

    # -- diagnostics ---------------------------------------------------------------------------------------------------
    def state_text(self) -> str:
        """idle | collecting <env> n/shots | adapting <env>."""
        if self.adapting is not None:
            return f"adapting {self.adapting}"
        c = self.collecting
        if c is not None:
            return f"collecting {c.env} {self.engine.buffer.count(c.env)}/{self.p['shots']}"
        return "idle"

    def publish_diagnostics(self) -> None:
        """/diagnostics: rate, latency, backend, active environment, adaptation state."""
        now = time.monotonic()
        window = [x for x in list(self.latencies) if now - x[0] <= max(self.p["diagnostics_period"], 1.0)]
        span = max(self.p["diagnostics_period"], 1.0)
        lat = np.array([x[1] for x in window]) * 1e3
        age = np.array([x[2] for x in window]) * 1e3
        state = self.engine.state
        values = {
            "rate_hz": len(window) / span,
            "latency_ms_p50": float(np.median(lat)) if len(lat) else float("nan"),
            "latency_ms_max": float(lat.max()) if len(lat) else float("nan"),
            "stamp_age_ms_p50": float(np.median(age)) if len(age) else float("nan"),
            "backend": self.engine.backend.name,
            "model": str(self.engine.backend.manifest.root),
            "active_environment": state.env or "(meta-initialisation)",
            "serving_version": state.version,
            "adaptation_state": self.state_text(),
            "last_adaptation": self.last_adapt,
            **{f"frames_{k}": v for k, v in self.counts.items()},
        }
        recent_warning = any(now - t < max(self.p["diagnostics_period"], WARN_EVERY) for t in self.warned.values())
        level, text = (1, "input problems, see the log") if recent_warning else (
            (0, "ok") if window else (1, "no frames"))
        self.pub_diag.publish(messages.diagnostics_msg(self.get_clock().now().to_msg(), "mtml: perception_node",
                                                       self.get_fully_qualified_name(), level, text, values))


def _cli(argv: list[str]) -> None:
    """Handle --help (everything else is a ROS argument)."""
    epilog = "parameters (--ros-args -p NAME:=VALUE or --params-file config/perception.yaml):\n" + "\n".join(
        f"  {p.name:<24} {p.description} (default {p.default!r})" for p in params.PARAMS)
    parser = argparse.ArgumentParser(prog="perception_node", description=__doc__.splitlines()[0], epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)


def _close(node: PerceptionNode | None, executor: SingleThreadedExecutor) -> None:
    """Stop the node; during an adaptation (it cannot be interrupted and writes nothing) exit without waiting."""
    busy = node is not None and node.adapting is not None
    executor.shutdown(timeout_sec=0.0 if busy else None)
    if node is not None:
        node.adapt_worker.shutdown(wait=False)
        node.destroy_node()
    if busy:
        rclpy.try_shutdown()
        print("perception_node: exiting during an adaptation (discarded)", file=sys.stderr, flush=True)
        os._exit(0)


def main(args: list[str] | None = None) -> int:
    """Console entry point; exits 0 on Ctrl-C / shutdown, 2 on bad parameters or model."""
    argv = list(sys.argv if args is None else args)
    _cli(remove_ros_args(argv)[1:])
    # Inference and adaptation share the GIL; with the default 5 ms switch interval every handover from the
    # adaptation thread can cost the frame callback 5 ms (dozens per frame), which drops frames while adapting.
    sys.setswitchinterval(SWITCH_INTERVAL)
    return spin.run("perception_node", argv, PerceptionNode, close=_close)


if __name__ == "__main__":
    sys.exit(main())
