"""perception_node: scene class, depth, normals and vanishing points per frame; adapts to new environments.

Every camera frame gets all four outputs; a few labelled frames of a new environment adapt the model on request.

    perception_node --ros-args --params-file config/perception.yaml -r image:=/camera/image \
        -r depth_label:=/camera/depth -r camera_info:=/camera/camera_info

Thin adapter: messages in, `mtml_core.adapt.AdaptationEngine` calls, messages out. The frame path, labels,
parameters and diagnostics live here; the adaptation services in `mtml.services`, the collection and time
matching of labelled frames in `mtml.collection` (no rclpy). Every callback runs in one
executor thread; the slow work runs in one background worker thread (lower CPU priority): building collected
support frames (`mtml.collection`) and the adaptation itself, which the adapt service (a coroutine in its own
callback group) awaits. Frames keep flowing meanwhile and the engine swaps the adapted state in atomically. rclpy's
MultiThreadedExecutor is not used: it delayed frames by up to 0.7 s (bench/node_latency.py, closed loop).

No input stops the node: malformed messages are rejected with a reason (logged at most once per `warn_period` per
kind, see `mtml.throttle`), bad requests are answered with one, and an unexpected error in a callback is logged as
an internal error instead of ending the process. See docs/node.md for the topics and services.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from mtml_interfaces.msg import SceneClass, VanishingPoints
from mtml_interfaces.srv import Adapt, Collect, Profile, Recognize
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from mtml import messages, params, spin
from mtml.collection import Collector, Needs
from mtml.image_conv import array_to_msg, check_depth_msg, depth_from_msg, rgb_from_compressed, rgb_from_msg
from mtml.services import AdaptationServices
from mtml.throttle import KINDS, Throttle, safe
from mtml_core.adapt import AdaptationEngine, EngineConfig
from mtml_core.adapt.labels import check_vp
from mtml_core.data.geometry import intrinsics
from mtml_core.export_cache import resolve_export
from mtml_core.uncertainty import UncertaintyMonitor, unsupported

SWITCH_INTERVAL = 0.0005  # s, see main()
BACKGROUND_NICE = 10  # the worker thread yields the CPU to inference (and to the rest of the robot)
CLOSE_WAIT = 3.0  # s the shutdown waits for the worker (a cancelled adaptation stops at its next inner step)


def _background_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux: nice is per thread); best effort elsewhere."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (OSError, AttributeError):
        pass
    _WORKERS.append(threading.current_thread())


_WORKERS: list[threading.Thread] = []  # the worker threads started (joined at shutdown)


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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
                          adapt_threads=p["adapt_threads"], adapt_workers=p["adapt_workers"],
                          adapt_timeout=p["adapt_timeout"], vp_lines_width=p["vp_lines_width"],
                          depth_optimizer=p["depth_optimizer"])
    model = Path(os.path.expanduser(p["model"])) if p["model"] else params.DEFAULT_MODEL
    try:
        export = resolve_export(model, Path(os.path.expanduser(p["export_cache_dir"])), log.info)
    except ValueError as exc:
        raise ValueError(f"parameter 'model': {exc}") from None
    try:
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


def _qos_overridable() -> QoSOverridingOptions:
    """History, depth and reliability settable per topic with `qos_overrides.<topic>.<pub|sub>.<policy>`."""
    return QoSOverridingOptions.with_default_policies()


class PerceptionNode(AdaptationServices, Node):
    """Subscribes to camera frames, publishes the four outputs, serves collect/adapt/profiles/recognize."""

    def __init__(self) -> None:
        super().__init__("perception_node")
        self.p = params.declare(self)
        self.throttle = Throttle(self.get_logger().warning, self.p["warn_period"])
        self.worker = ThreadPoolExecutor(1, "mtml-worker", initializer=_background_priority)
        self.engine = build_engine(self.p, self.get_logger())
        self.uncertainty = UncertaintyMonitor(unsupported(self.engine.model))  # P-AM only (mtml_core.uncertainty)
        why = self.uncertainty.check_samples(self.p["uncertainty_samples"])
        if why is not None:
            raise ValueError(f"parameter 'uncertainty_samples': {why}")
        self.add_on_set_parameters_callback(self._check_uncertainty)
        self.add_post_set_parameters_callback(self._after_set)
        self.collector = Collector(self._build_frame, self.worker)
        self.last_env: str | None = None
        self.adapting: str | None = None
        self.last_adapt = "none yet"
        self.recent: deque = deque(maxlen=self.p["recognize_frames"])
        self.latencies: deque = deque(maxlen=300)  # (monotonic time, receive->publish s, stamp age s)
        self.counts = {"received": 0, "published": 0, "rejected": 0, "idle": 0}
        self.last_idle = -math.inf  # monotonic time of the last frame skipped by `lazy`
        self.last_processed = 0.0
        self.closing = False
        self.worker.submit(self._guard("recognize", self._prepare_recognition))
        self.done_lock = threading.Lock()  # worker results vs. time-outs vs. shutdown

        overridable = _qos_overridable()
        sensor = QoSProfile(history=qos_profile_sensor_data.history, depth=1,
                            reliability=qos_profile_sensor_data.reliability,
                            durability=qos_profile_sensor_data.durability)
        if self.p["use_depth_label"]:
            self.create_subscription(Image, "depth_label", self._guard("depth_label", self.on_depth_label),
                                     qos_profile_sensor_data, qos_overriding_options=overridable)
        if self.p["use_camera_info"]:
            self.create_subscription(CameraInfo, "camera_info", self._guard("camera_info", self.on_camera_info),
                                     qos_profile_sensor_data, qos_overriding_options=overridable)
        if self.p["use_vp_label"]:
            self.create_subscription(VanishingPoints, "vp_label", self._guard("vp_label", self.on_vp_label),
                                     QoSProfile(depth=10), qos_overriding_options=overridable)
        # created after the label subscriptions: when an image and its camera_info are both waiting, the executor
        # (which takes subscriptions in creation order) takes the camera_info first
        on_image = self._guard("image", self.on_image)
        if self.p["transport"] == "compressed":  # image_transport's name for it: <image topic>/compressed
            self.create_subscription(CompressedImage, self.resolve_topic_name("image") + "/compressed", on_image,
                                     sensor, qos_overriding_options=overridable)
        else:
            self.create_subscription(Image, "image", on_image, sensor, qos_overriding_options=overridable)
        out = QoSProfile(depth=2)
        self.pub_depth = self.create_publisher(Image, "~/depth", out, qos_overriding_options=overridable)
        self.pub_info = self.create_publisher(CameraInfo, "~/depth/camera_info", out,
                                              qos_overriding_options=overridable)
        self.pub_normals = self.create_publisher(Image, "~/normals", out, qos_overriding_options=overridable)
        self.pub_normals_info = self.create_publisher(CameraInfo, "~/normals/camera_info", out,
                                                      qos_overriding_options=overridable)
        self.pub_vp = self.create_publisher(VanishingPoints, "~/vanishing_points", out,
                                            qos_overriding_options=overridable)
        self.pub_scene = self.create_publisher(SceneClass, "~/scene", out, qos_overriding_options=overridable)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out, qos_overriding_options=overridable)
        self.pub_std = self.pub_std_info = None  # advertised only for a P-AM model
        if self.uncertainty.reason is None:
            self.pub_std = self.create_publisher(Image, "~/depth/std", out, qos_overriding_options=overridable)
            self.pub_std_info = self.create_publisher(CameraInfo, "~/depth/std/camera_info", out,
                                                      qos_overriding_options=overridable)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=5))
        self.create_service(Collect, "~/collect", self._guard_service(self.on_collect))
        self.create_service(Profile, "~/profiles", self._guard_service(self.on_profiles))
        self.create_service(Recognize, "~/recognize", self._guard_service(self.on_recognize))
        # one adaptation at a time; its coroutine waits for the worker thread without holding up other callbacks
        self.create_service(Adapt, "~/adapt", self.on_adapt, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, "~/cancel_adapt", self._guard_service(self.on_cancel_adapt))
        self.worker_done = self.create_guard_condition(lambda: None)  # wakes the executor when the worker is done
        self.collect_timer = self.create_timer(0.05, self._guard("collect", self.collect_step))
        self.collect_timer.cancel()
        self.diag_timer = self.create_timer(self.p["diagnostics_period"], self.publish_diagnostics)
        self.recognize_timer = self.create_timer(self.p["recognize_period"],
                                                 self._guard("recognize", self.auto_recognize))
        man = self.engine.backend.manifest
        # The model, torch and ROS objects live as long as the node: keep the collector from walking them (a full
        # collection holds the GIL, i.e. stalls inference, for tens of ms).
        gc.freeze()
        self.get_logger().info(f"serving {man.root} ({self.engine.backend.name}, input {man.input_hw[1]}x"
                               f"{man.input_hw[0]}, tasks {', '.join(self.engine.tasks)}); profiles in "
                               f"{self.engine.profiles.root}; node code in {Path(__file__).parent}")

    # -- helpers -------------------------------------------------------------------------------------------------------
    def _prepare_recognition(self) -> None:
        """Worker, at start-up: the recognition calibration when it will be needed (auto_recognize, or saved
        profiles to recognise), so the first recognize does not stall frames in the executor thread."""
        if self.p["auto_recognize"] or self.engine.list_profiles():
            self.engine.recognition_calibration()

    def warn(self, kind: str, reason: str) -> None:
        """A rate-limited warning of one of `mtml.throttle.KINDS`."""
        self.throttle.warn(kind, reason)

    def _guard(self, kind: str, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn`` for a subscription or timer: an unexpected error is logged (as an internal error) instead of
        ending the node."""
        def run(*args: Any) -> None:
            if self.closing:
                return
            try:
                fn(*args)
            except Exception as exc:  # no input may stop the node; the reason goes to the log
                self.warn("internal", f"{kind}: internal error {type(exc).__name__}: {safe(str(exc))}")
        return run

    def _guard_service(self, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """``fn`` for a service: an unexpected error is answered (success false, the reason) and logged."""
        def run(req: Any, res: Any) -> Any:
            try:
                return fn(req, res)
            except Exception as exc:  # no request may stop the node
                res.success, res.message = False, f"internal error {type(exc).__name__}: {safe(str(exc))}"
                self.warn("internal", f"{fn.__name__}: {res.message}")
                return res
        return run

    def _check_uncertainty(self, changed: list) -> SetParametersResult:
        """Refuse uncertainty_samples > 0 for a model without a multiplier distribution (not P-AM)."""
        for prm in changed:
            if prm.name == "uncertainty_samples" and isinstance(prm.value, int):
                why = self.uncertainty.check_samples(prm.value)
                if why is not None:
                    return SetParametersResult(successful=False, reason=f"parameter 'uncertainty_samples': {why}")
        return SetParametersResult(successful=True)

    def _after_set(self, changed: list) -> None:
        """Apply parameters that were accepted while running."""
        for prm in changed:
            if prm.name not in params.BY_NAME:
                continue
            self.p[prm.name] = prm.value
            if prm.name == "recognize_frames":
                self.recent = deque(self.recent, maxlen=prm.value)
            elif prm.name == "recognize_threshold":
                self.engine.config.switch_confidence = prm.value
            elif prm.name == "inner_steps":
                self.engine.config.steps = prm.value
            elif prm.name == "adapt_timeout":
                self.engine.config.adapt_timeout = prm.value
            elif prm.name == "depth_optimizer":  # read by the next adaptation
                self.engine.config.depth_optimizer = prm.value
            elif prm.name == "warn_period":
                self.throttle.period = prm.value
            elif prm.name == "diagnostics_period":
                self.diag_timer.timer_period_ns = int(prm.value * 1e9)
                self.diag_timer.reset()
            elif prm.name == "recognize_period":
                self.recognize_timer.timer_period_ns = int(prm.value * 1e9)
                self.recognize_timer.reset()

    def camera_k(self, stamp: int, hw: tuple[int, int]) -> np.ndarray | None:
        """K of the camera_info with the image's stamp (else the latest one), when it is for images of size ``hw``."""
        infos = self.collector.infos
        if not len(infos):
            return None
        K, size = infos.match(stamp, self.p["label_sync_tolerance"] * 1e9) or infos.latest()
        if size != hw:
            self.warn("camera_info", f"camera_info is for {size[1]}x{size[0]} images but the image is "
                                     f"{hw[1]}x{hw[0]}: ignored")
            return None
        return K

    # -- inference -----------------------------------------------------------------------------------------------------
    def on_image(self, msg: Image | CompressedImage) -> None:
        """Run the model on a frame and publish all outputs (and the depth image's camera_info) with its header."""
        t0 = time.monotonic()
        self.counts["received"] += 1
        if self.p["max_rate"] > 0 and t0 - self.last_processed < 1.0 / self.p["max_rate"]:
            return
        try:
            if isinstance(msg, CompressedImage):
                rgb = rgb_from_compressed(msg, self.p["max_image_pixels"])
            else:
                rgb = rgb_from_msg(msg, self.p["max_image_pixels"])
            self.last_processed = t0
            hw = rgb.shape[:2]
            stamp = stamp_ns(msg.header.stamp)
            K = self.camera_k(stamp, hw)
            K_out = K if K is not None else intrinsics(self.p["fallback_hfov"], hw)
            if self.p["lazy"] and not self.outputs_wanted():
                self.counts["idle"] += 1
                self.last_idle = t0
                self.recent.append(rgb)
                self.collector.offer(stamp, t0, rgb)
                return
            pred = self.engine.infer(rgb, K_out)
        except ValueError as exc:
            self.counts["rejected"] += 1
            self.warn("image", f"image rejected: {exc}")
            return
        size = hw if self.p["output_resolution"] == "input" else None
        header = msg.header
        depth = messages.depth_msg(pred.depth, header, size)
        out_hw = (depth.height, depth.width)
        info = messages.output_camera_info(K_out, hw, out_hw, header)
        self.pub_info.publish(info)
        self.pub_depth.publish(depth)
        self.pub_normals_info.publish(info)  # REP 118 pairs an image with <image>/camera_info by name
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
        self.collector.offer(stamp, t0, rgb)
        if self.pub_std is not None:  # after the four outputs: sampling never delays them
            self.publish_uncertainty(rgb, pred.version, header, size, info)

    def outputs_wanted(self) -> bool:
        """Whether any output topic (the images' camera_info included) has a subscriber."""
        pubs = (self.pub_depth, self.pub_info, self.pub_normals, self.pub_normals_info, self.pub_vp, self.pub_scene,
                self.pub_overlay, self.pub_std, self.pub_std_info)
        return any(p is not None and p.get_subscription_count() > 0 for p in pubs)

    def publish_uncertainty(self, rgb: np.ndarray, version: int, header: Any, size: tuple[int, int] | None,
                            info: CameraInfo) -> None:
        """~/depth/std (and its camera_info, the depth image's) when an estimate is due (mtml_core.uncertainty)."""
        wanted = self.pub_std.get_subscription_count() > 0
        u = self.uncertainty.step(self.engine, rgb, version, self.p["uncertainty_samples"],
                                  self.p["uncertainty_period"], wanted)
        if u is not None and u.depth_std is not None:
            self.pub_std_info.publish(info)
            self.pub_std.publish(messages.depth_msg(u.depth_std[0], header, size))

    # -- labels --------------------------------------------------------------------------------------------------------
    def on_depth_label(self, msg: Image) -> None:
        """Keep depth labels while collecting, for time matching (decoded in the worker when a frame is collected)."""
        if self.collector.current is None:
            return
        try:  # the whole layout: a label kept for matching holds at most max_image_pixels of depth
            check_depth_msg(msg, self.p["max_image_pixels"])
        except ValueError as exc:
            self.warn("depth_label", f"depth label rejected: {exc}")
            return
        self.collector.add_depth(stamp_ns(msg.header.stamp), msg)

    def on_vp_label(self, msg: VanishingPoints) -> None:
        """Keep vanishing-direction labels while collecting, for time matching."""
        if self.collector.current is None:
            return
        if len(msg.directions) != 3:
            self.warn("vp_label", f"vp_label rejected: {len(msg.directions)} directions, expected 3")
            return
        dirs = np.array([[d.x, d.y, d.z] for d in msg.directions], np.float64)
        try:
            if not (np.isfinite(dirs).all() and np.abs(dirs).max() < 1e6):
                raise ValueError("directions must be finite")
            dirs = check_vp(dirs.astype(np.float32))
        except ValueError as exc:
            self.warn("vp_label", f"vp_label rejected: {exc}")
            return
        self.collector.add_vp(stamp_ns(msg.header.stamp), dirs)

    def on_camera_info(self, msg: CameraInfo) -> None:
        """Keep recent valid intrinsics for time matching."""
        try:
            self.collector.infos.add(stamp_ns(msg.header.stamp), messages.k_from_camera_info(msg))
        except ValueError as exc:
            self.warn("camera_info", str(exc))

    def _needs(self) -> Needs:
        """Labels a collected frame waits for: those that have a publisher."""
        def published(topic: str) -> bool:
            return self.count_publishers(self.resolve_topic_name(topic)) > 0

        depth = self.p["use_depth_label"] and published("depth_label")
        return Needs(depth=depth, vp=self.p["use_vp_label"] and published("vp_label"),
                     k=depth and self.p["use_camera_info"] and published("camera_info"))

    def collect_step(self) -> None:
        """Timer while collecting: hand labelled frames to the worker, pick up its results."""
        for level, text in self.collector.step(self._needs(), self.p["label_sync_tolerance"], time.monotonic()):
            if level == "info":
                self.get_logger().info(text)
            else:
                self.warn("collect", text)
        if not self.collector.active:
            self.collect_timer.cancel()

    def _build_frame(self, env: str, rgb: np.ndarray, depth_label: Image | None, K: np.ndarray | None,
                     class_name: str | None, vp: np.ndarray | None) -> int:
        """Worker thread: decode the depth label and add the labelled frame to the engine; returns the count."""
        depth = None if depth_label is None else depth_from_msg(depth_label, self.p["max_image_pixels"])
        if depth is None and vp is None and class_name is None:
            raise ValueError("frame has no label (no depth_label, vp_label, class label or vanishing directions)")
        return self.engine.add_frame(env, rgb, depth=depth, K=K if depth is not None else None,
                                     class_name=class_name, vp_dirs=vp)

    # -- diagnostics ---------------------------------------------------------------------------------------------------
    def state_text(self) -> str:
        """idle | collecting <env> n/shots | adapting <env>."""
        if self.adapting is not None:
            return f"adapting {self.adapting}"
        return self.collector.state() or "idle"

    def publish_diagnostics(self) -> None:
        """/diagnostics: rate, latency, backend, active environment, adaptation state, problems by kind."""
        if self.closing:
            return
        now = time.monotonic()
        span = max(self.p["diagnostics_period"], 1.0)
        window = [x for x in list(self.latencies) if now - x[0] <= span]
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
            **{f"problems_{k}": self.throttle.total[k] for k in KINDS},
            **self.uncertainty.values(state.version),
        }
        recent = self.throttle.recent(max(self.p["diagnostics_period"], self.throttle.period, 1.0))
        level, text = (1, f"input problems ({', '.join(sorted(recent))}), see the log") if recent else (
            (0, "ok") if window else (0, "lazy: frames arrive, no output has a subscriber")
            if now - self.last_idle <= span else (1, "no frames"))
        fqn = self.get_fully_qualified_name()
        self.pub_diag.publish(messages.diagnostics_msg(self.get_clock().now().to_msg(), f"mtml: {fqn}", fqn,
                                                       level, text, values))

    # -- shutdown ------------------------------------------------------------------------------------------------------
    def close(self) -> bool:
        """Stop taking input, cancel a running adaptation (it stops at its next inner step, the old state serving)
        and join the worker; returns False when the worker did not end within CLOSE_WAIT s."""
        with self.done_lock:
            self.closing = True  # no more results handed to the executor
        for timer in (self.collect_timer, self.diag_timer, self.recognize_timer):
            timer.cancel()
        for sub in list(self.subscriptions):
            self.destroy_subscription(sub)
        self.worker.shutdown(wait=False, cancel_futures=True)
        if self.engine.cancel():
            print("perception_node: cancelled the running adaptation (discarded)", file=sys.stderr, flush=True)
        end = time.monotonic() + CLOSE_WAIT
        for thread in _WORKERS:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in _WORKERS)


def _cli(argv: list[str]) -> None:
    """Handle --help (everything else is a ROS argument)."""
    epilog = "parameters (--ros-args -p NAME:=VALUE or --params-file config/perception.yaml):\n" + "\n".join(
        f"  {p.name:<24} {p.description} (default {p.default!r})" for p in params.PARAMS)
    parser = argparse.ArgumentParser(prog="perception_node", description=__doc__.splitlines()[0], epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)


def _close(node: PerceptionNode | None, executor: SingleThreadedExecutor) -> None:
    """Shut down in order: input and timers, the worker thread (a running adaptation cancelled, the thread joined),
    the executor, the node. A worker that does not end in time (a single inner step running on) writes nothing:
    then exit without waiting for it."""
    joined = node is None or node.close()
    executor.shutdown(timeout_sec=1.0)
    if node is not None:
        node.destroy_node()
    if not joined:
        rclpy.try_shutdown()
        print("perception_node: exiting without waiting for the worker thread", file=sys.stderr, flush=True)
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
