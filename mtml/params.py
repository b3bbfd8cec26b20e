"""perception_node's parameters: one table of name, default, description, check and mutability.

Declared up front (`declare`), loaded from config/perception.yaml (`--params-file`), validated as a whole at
start-up (`validate`, ValueError naming the parameter) and one by one on every set-parameter request
(`on_set`, which answers the reason). Read-only parameters (model, backend, subscriptions) need a restart.
This module does not initialise rclpy; `declare` takes the node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

import mtml_core
from mtml_core import vp_lines
from mtml_core.inner_loop import OPTIMIZERS

DEFAULT_MODEL = Path(mtml_core.__file__).resolve().parent / "assets" / "default"  # `model: ""`

BACKENDS = ("onnxruntime", "torch", "tensorrt")
OUTPUT_RESOLUTIONS = ("model", "input")
TRANSPORTS = ("raw", "compressed")

Check = Callable[[Any], str | None]
INT_MAX = 2**63 - 1  # ROS integer parameters are int64


def _one_of(choices: Sequence[str]) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, got {v!r}"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _input_size(v: Sequence[int]) -> str | None:
    v = list(v)
    if len(v) != 2 or any(x < 0 for x in v) or (0 in v and v != [0, 0]):
        return f"must be [height, width] with both > 0, or [0, 0] for the model's own size, got {v}"
    return None


@dataclass(frozen=True)
class Param:
    """One parameter: its default fixes the ROS type; ``bounds`` (lo, hi), inclusive, go into the descriptor
    (so `ros2 param describe` shows them and rclpy enforces them); ``check`` returns any other problem or None."""

    name: str
    default: Any
    description: str
    check: Check | None = None
    read_only: bool = False
    bounds: tuple[float, float] | None = None

    def descriptor(self) -> ParameterDescriptor:
        """The ROS parameter descriptor: description, read-only flag, range."""
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.bounds is not None:
            lo, hi = self.bounds
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return desc


PARAMS: tuple[Param, ...] = (
    Param("model", "", "export directory, its manifest.json, or a checkpoint directory (exported once into "
          "export_cache_dir); '' = the shipped default mtml_core/assets/default", read_only=True),
    Param("export_cache_dir", "~/.cache/mtml/exports", "where checkpoints given as `model` are exported to",
          _non_empty, read_only=True),
    Param("backend", "onnxruntime", "runtime backend: onnxruntime, torch or tensorrt", _one_of(BACKENDS),
          read_only=True),
    Param("threads", 1, "onnxruntime intra-op threads (0 = one per core)", read_only=True, bounds=(0, 256)),
    Param("device", "cpu", "torch backend device (cpu, cuda, cuda:N)", _non_empty, read_only=True),
    Param("tensorrt.precision", "fp16", "TensorRT engine precision: fp16 or fp32", _one_of(("fp16", "fp32")),
          read_only=True),
    Param("tensorrt.cache_dir", "", "TensorRT engine cache directory ('' = ~/.cache/mtml/trt)", read_only=True),
    Param("tensorrt.force_rebuild", False, "rebuild TensorRT engines even when cached", read_only=True),
    Param("input_size", [0, 0], "network input [height, width]; must match the model ([0, 0] = the model's)",
          _input_size, read_only=True),
    Param("transport", "raw", "camera input: 'raw' (sensor_msgs/Image on `image`) or 'compressed' "
          "(sensor_msgs/CompressedImage, JPEG or PNG, on `image`/compressed)", _one_of(TRANSPORTS), read_only=True),
    Param("max_image_pixels", 1920 * 1080, "largest camera frame or depth label (width x height) accepted; "
          "larger ones are rejected before they are converted", bounds=(1, 7680 * 4320)),
    Param("output_resolution", "model", "publish depth/normals at the 'model' input size or the camera 'input' "
          "size", _one_of(OUTPUT_RESOLUTIONS)),
    Param("fallback_hfov", 60.0, "horizontal field of view (degrees) assumed for ~/depth/camera_info until a "
          "valid camera_info has arrived (principal point at the centre)", bounds=(1.0, 179.0)),
    Param("vp_lines_width", vp_lines.DEFAULT_WIDTH, "refine the published vanishing directions on the frame's line "
          f"segments, found in the frame resized to this width ({vp_lines.MIN_WIDTH}-{vp_lines.MAX_WIDTH}; "
          "mtml_core.vp_lines; 0 = off: the VP head alone)", vp_lines.width_problem, read_only=True,
          bounds=(0, vp_lines.MAX_WIDTH)),
    Param("publish_overlay", False, "publish ~/overlay (rgb8 picture of the four outputs) while subscribed"),
    Param("overlay_max_depth", 10.0, "depth (m) at the far end of the overlay's colour map", bounds=(0.01, 1e4)),
    Param("use_depth_label", True, "subscribe to depth_label (32FC1 m / 16UC1 mm) for collected frames",
          read_only=True),
    Param("use_camera_info", True, "subscribe to camera_info (K for normals from depth and VP pixels)",
          read_only=True),
    Param("use_vp_label", True, "subscribe to vp_label (VanishingPoints, time-matched) for collected frames",
          read_only=True),
    Param("label_sync_tolerance", 0.005, "largest |stamp difference| (s) between an image and its labels",
          bounds=(0.0, 10.0)),
    Param("shots", 10, "labelled frames to collect per environment (collection then stops)", bounds=(1, 1000)),
    Param("collect_rate", 2.0, "most frames per second added while collecting (0 = every frame)",
          bounds=(0.0, 1000.0)),
    Param("inner_steps", 10, "inner-loop steps of an adaptation when the request says 0 (a request may ask for "
          "up to 1000, mtml_core.adapt.engine.MAX_STEPS)", bounds=(1, 1000)),
    Param("depth_optimizer", "sgd", "the depth head's inner loop: 'sgd' (the paper's, at the meta-learnt rate) or "
          "'adam' (mtml_core.adapt.engine.ADAM_LR; real cameras, see docs/results.md 'Real data')",
          _one_of(OPTIMIZERS)),
    Param("adapt_timeout", 120.0, "seconds an adaptation may take; past it it stops between inner steps, the old "
          "state keeps serving and the adapt request is answered with the reason", bounds=(0.1, 86400.0)),
    Param("adapt_threads", 1, "torch threads per adapting task (inference keeps the rest of the CPU)",
          read_only=True, bounds=(1, 64)),
    Param("adapt_workers", 2, "tasks adapted in parallel", read_only=True, bounds=(1, 4)),
    Param("uncertainty_samples", 0, "P-AM models only: multipliers sampled from the attention prior per uncertainty "
          "estimate, for ~/depth/std and the per-task confidence on /diagnostics (0 = off; each sample costs one "
          "backbone and head pass per task); refused for other models", bounds=(0, 16)),
    Param("uncertainty_period", 10, "estimate the uncertainty on every Nth processed frame, and only while "
          "~/depth/std has a subscriber", bounds=(1, 1000)),
    Param("lazy", False, "run the model only while one of the outputs has a subscriber (as image_pipeline's lazy "
          "nodes); frames still reach an open collection and recognition, and are counted as frames_idle"),
    Param("max_rate", 0.0, "most frames per second processed (0 = every frame that arrives)", bounds=(0.0, 1000.0)),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", bounds=(0.01, 3600.0)),
    Param("warn_period", 5.0, "seconds between two logged warnings of the same kind (image, camera_info, "
          "depth_label, ...); the others are counted", bounds=(0.0, 3600.0)),
    Param("profile_dir", "~/.ros/mtml/profiles", "directory of saved environment profiles", _non_empty,
          read_only=True),
    Param("auto_recognize", False, "periodically recognise the environment and load its profile"),
    Param("recognize_period", 5.0, "seconds between automatic recognitions", bounds=(0.1, 86400.0)),
    Param("recognize_frames", 5, "recent frames used by a recognition", bounds=(1, 50)),
    Param("recognize_threshold", 0.8, "confidence needed to switch to a recognised profile", bounds=(0.0, 1.0)),
)
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is)."""
    spec = BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    want = type(spec.default)
    if want is list:
        ok = isinstance(value, (list, tuple)) and all(type(x) is int for x in value)
    else:
        ok = type(value) is want  # as rclpy: no int for a double, no bool for an integer
    if not ok:
        return f"expected {'a list of integers' if want is list else want.__name__}, got {value!r}"
    if spec.bounds is not None and not spec.bounds[0] <= value <= spec.bounds[1]:
        return f"must be in [{spec.bounds[0]:g}, {spec.bounds[1]:g}], got {value!r}"
    return None if spec.check is None else spec.check(value)


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """All parameters checked (missing ones take their default); ValueError names the first bad one."""
    out = {p.name: p.default for p in PARAMS}
    for name, value in values.items():
        why = problem(name, value)
        if why is not None:
            raise ValueError(f"parameter {name!r}: {why}")
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def declare(node: Any) -> dict[str, Any]:
    """Declare every parameter on ``node`` (values from --params-file / -p override the defaults), validate them,
    install the set-parameter check, and return the values; ValueError names a bad one."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values = {}
    for p in PARAMS:
        try:
            values[p.name] = node.declare_parameter(p.name, p.default, p.descriptor()).value
        except InvalidParameterTypeException as exc:
            raise ValueError(f"parameter {p.name!r}: expected {type(p.default).__name__} ({exc})") from None
        except InvalidParameterValueException as exc:  # out of the descriptor's range
            raise ValueError(f"parameter {p.name!r}: {exc}") from None
    values = validate(values)
    node.add_on_set_parameters_callback(on_set)
    return values


def on_set(params: Sequence[Any]) -> SetParametersResult:
    """Set-parameter check: refuses the whole request with the first problem as the reason. Parameters not in
    the table (rclpy's own, such as qos_overrides.*) are left to rclpy."""
    for p in params:
        if p.name not in BY_NAME:
            continue
        why = problem(p.name, p.value)
        if why is not None:
            return SetParametersResult(successful=False, reason=f"parameter {p.name!r}: {why}")
    return SetParametersResult(successful=True)


def flatten_yaml(doc: Mapping[str, Any], node_name: str = "perception_node") -> dict[str, Any]:
    """Parameters of ``node_name`` from a ROS 2 params-file dict (nested keys joined with '.')."""
    keys = (f"/**/{node_name}", node_name, f"/{node_name}", "/**")
    section = next((doc[k] for k in keys if k in doc), None)
    if not isinstance(section, Mapping) or not isinstance(section.get("ros__parameters"), Mapping):
        raise ValueError(f"params file has no '/**/{node_name}: ros__parameters:' section")
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Mapping[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(f"{prefix}{key}.", value)
            else:
                out[prefix + key] = value

    walk("", section["ros__parameters"])
    return out
