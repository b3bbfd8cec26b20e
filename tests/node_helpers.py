"""Helpers for the perception_node tests (a plain module, not a test).

Test side: `make_export` (a small random-weight model exported like the real one), `start_node`.
Child side (a `python -c` client started through RosSession, imports rclpy lazily): `Client` publishes frames,
records outputs and calls the node's services, then prints one JSON line for the test to read.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the node's label inputs remapped to sim_camera's topics (images, depth, intrinsics, ground-truth VPs)
SIM_CAMERA_REMAP = {"image": "/camera/image", "depth_label": "/camera/depth", "camera_info": "/camera/camera_info",
                    "vp_label": "/camera/ground_truth/vanishing_points"}
CONFIG = ROOT / "config" / "perception.yaml"
NODE = "/perception_node"
OUTPUTS = {  # topic -> type of the node's four outputs
    f"{NODE}/depth": "sensor_msgs/msg/Image",
    f"{NODE}/normals": "sensor_msgs/msg/Image",
    f"{NODE}/vanishing_points": "mtml_interfaces/msg/VanishingPoints",
    f"{NODE}/scene": "mtml_interfaces/msg/SceneClass",
}
CLASS_NAMES = ("c0", "c1", "c2", "c3", "c4")


def small_model(seed: int = 0) -> Any:
    """A small MultiTaskModel (8 filters, 48x64 input) with random weights."""
    import torch

    from mtml_core.config import ModelConfig
    from mtml_core.model import MultiTaskModel

    torch.manual_seed(seed)
    return MultiTaskModel(ModelConfig(filters=8, input_hw=(48, 64), class_names=CLASS_NAMES))


def make_export(out_dir: Path, seed: int = 0) -> Path:
    """The small model exported for the backends; returns its dir."""
    from mtml_core.export import export_model

    export_model(small_model(seed), out_dir)
    return Path(out_dir)


def make_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    """The small model as a checkpoint (model.safetensors + config.yaml, like the shipped default)."""
    from mtml_core.checkpoint import save_checkpoint

    return save_checkpoint(small_model(seed), out_dir)


def node_argv(export: Path, profiles: Path, *params: str, remap: dict[str, str] | None = None) -> list[str]:
    """perception_node arguments: the package's params file, the test model and profile dir, extra `name:=value`."""
    argv = ["--ros-args", "--params-file", str(CONFIG), "-p", f"model:={export}", "-p", f"profile_dir:={profiles}",
            "-p", "diagnostics_period:=0.2"]
    for p in params:
        argv += ["-p", p]
    for a, b in (remap or {}).items():
        argv += ["-r", f"{a}:={b}"]
    return argv


def start_node(ros: Any, export: Path, profiles: Path, *params: str, remap: dict[str, str] | None = None,
               name: str = "perception_node", timeout: float = 60.0) -> Any:
    """Start the console script and wait until it serves (its log says so); fails with the log otherwise."""
    proc = ros.script(name, *node_argv(export, profiles, *params, remap=remap))
    deadline = time.monotonic() + timeout
    while "serving " not in proc.log():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("perception_node did not start:\n" + proc.log())
        time.sleep(0.1)
    return proc


def last_json(log: str) -> Any:
    """The last JSON line a child printed."""
    lines = [line for line in log.splitlines() if line.startswith(("{", "["))]
    if not lines:
        raise AssertionError("child printed no JSON:\n" + log)
    return json.loads(lines[-1])


def stamp_of(sec: int, nanosec: int = 0) -> int:
    """Nanoseconds of a stamp."""
    return sec * 1_000_000_000 + nanosec


# -- child side ------------------------------------------------------------------------------------------------------
class Client:
    """A ROS client in a child process: publish images, record topics, call services (all with a timeout)."""

    def __init__(self) -> None:
        import rclpy

        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node(f"test_client_{os.getpid()}")
        self.t0 = time.monotonic()
        self.got: dict[str, list[tuple[float, Any]]] = {}
        self.clients: dict[str, Any] = {}

    def now(self) -> float:
        """Seconds since the client started."""
        return time.monotonic() - self.t0

    def record(self, topic: str, type_name: str, reliable: bool = False) -> list[tuple[float, Any]]:
        """Keep (arrival time, message) of every message on ``topic``."""
        import importlib

        from rclpy.qos import QoSProfile, qos_profile_sensor_data

        pkg, kind, name = type_name.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
        store = self.got.setdefault(topic, [])
        best_effort = QoSProfile(depth=50, reliability=qos_profile_sensor_data.reliability)
        qos = QoSProfile(depth=50) if reliable else best_effort
        self.node.create_subscription(cls, topic, lambda m: store.append((self.now(), m)), qos)
        return store

    def publisher(self, topic: str, type_name: str = "sensor_msgs/msg/Image", reliable: bool = False) -> Any:
        """A publisher (sensor-data QoS unless ``reliable``)."""
        import importlib

        from rclpy.qos import QoSProfile, qos_profile_sensor_data

        pkg, kind, name = type_name.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
        return self.node.create_publisher(cls, topic, QoSProfile(depth=5) if reliable else qos_profile_sensor_data)

    def spin(self, seconds: float) -> None:
        """Process callbacks for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.rclpy.spin_once(self.node, timeout_sec=min(left, 0.02))

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Process callbacks until ``done()`` or ``timeout`` s; returns done()."""
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=0.02)
        return done()

    def call(self, service: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Call one of the node's services (collect, adapt, profiles, recognize) or a full service name with
        ``srv_type``; returns the response as a dict (or {'error': ...})."""
        import importlib

        kinds = {"collect": "Collect", "adapt": "Adapt", "profiles": "Profile", "recognize": "Recognize"}
        srv_type = fields.pop("srv_type", None)
        if srv_type is None:
            srv_type, service = f"mtml_interfaces/srv/{kinds[service]}", f"{NODE}/{service}"
        pkg, kind, name = srv_type.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
        if service not in self.clients:
            self.clients[service] = self.node.create_client(cls, service)
        cli = self.clients[service]
        if not self.spin_until(cli.service_is_ready, timeout):  # keep serving subscriptions meanwhile
            return {"error": f"service {service} not available"}
        future = cli.call_async(cls.Request(**fields))
        self.spin_until(future.done, timeout)
        if not future.done():
            return {"error": f"no answer from {service} in {timeout} s"}
        res = future.result()
        return {f: plain(getattr(res, f)) for f in res.get_fields_and_field_types()}

    def set_parameters(self, target: str, **values: Any) -> list[dict[str, Any]]:
        """Set parameters of node ``target`` through its set_parameters service; one result per parameter."""
        from rclpy.parameter import Parameter

        params = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        res = self.call(f"{target}/set_parameters", srv_type="rcl_interfaces/srv/SetParameters", parameters=params)
        return res.get("results", [res])

    def diagnostics(self) -> dict[str, str]:
        """Values of the node's latest /diagnostics status (recorded with ``record('/diagnostics', ...)``)."""
        msgs = self.got.get("/diagnostics", [])
        return {kv.key: kv.value for kv in msgs[-1][1].status[0].values} if msgs else {}

    def close(self, result: Any) -> None:
        """Print ``result`` as one JSON line and shut down."""
        print(json.dumps(result), flush=True)
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def plain(value: Any) -> Any:
    """A ROS message field as JSON-ready data (NaN stays float('nan'))."""
    if hasattr(value, "get_fields_and_field_types"):
        return {f: plain(getattr(value, f)) for f in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return [plain(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    return value


def child_code(body: str) -> str:
    """A `python -c` program: this module importable, then ``body``."""
    return f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n" + body


if __name__ == "__main__":
    sys.exit("node_helpers is a library for tests/test_node*.py")
