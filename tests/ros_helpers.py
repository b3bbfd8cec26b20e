"""Multi-process ROS 2 test utilities (a plain module, not a test).

Each test gets its own ROS_DOMAIN_ID and LOCALHOST discovery; every ROS participant runs in a child
process (started with the environment of mtml.ros_env, in its own process group, output to a log
file), so the pytest process never initialises rclpy. `RosSession.close()` ends them all.

Run as a script it is the children's toolbox:
    python tests/ros_helpers.py record TOPIC TYPE COUNT TIMEOUT OUT.json [--reliable]
    python tests/ros_helpers.py wait TOPIC TIMEOUT
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mtml.ros_env import ros_env, transport_env

ROOT = Path(__file__).resolve().parents[1]

# Domain IDs 1..101 keep Fast DDS's ports below Linux's ephemeral range; 0 is everyone's default.
_DOMAINS = list(range(1, 102))
_COUNTER = itertools.count()
BIG_ARRAY = 64  # byte arrays longer than this are recorded as their sha256


def next_domain_id() -> int:
    """A domain ID unlikely to be used by another test in this or a concurrent pytest process."""
    return _DOMAINS[(os.getpid() * 37 + next(_COUNTER)) % len(_DOMAINS)]


def child_env(domain_id: int, interfaces: bool = False, shm: bool = True) -> dict[str, str]:
    """Environment for a ROS child; with `interfaces` the built workspace (mtml_interfaces) is overlaid."""
    env = ros_env(domain_id, shm) if interfaces else transport_env(domain_id, shm)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


class RosProcess:
    """One child process in its own process group, output captured to a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv, self.log_path = argv, log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Wait for a normal exit; raises subprocess.TimeoutExpired."""
        return self.proc.wait(timeout)

    def stop(self, grace: float = 5.0) -> int:
        """SIGINT the process group, then SIGKILL it after `grace` seconds; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        try:  # children it left behind in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.returncode


class RosSession:
    """The ROS processes of one test on a private domain; a context manager that stops them all."""

    def __init__(self, tmp_dir: Path, interfaces: bool = False, shm: bool = True) -> None:
        self.domain_id = next_domain_id()
        self.env = child_env(self.domain_id, interfaces, shm)
        self.tmp = Path(tmp_dir)
        self.procs: list[RosProcess] = []

    def spawn(self, argv: list[str], name: str) -> RosProcess:
        """Start `argv` with the session's environment; its output goes to <tmp>/<name>.log."""
        proc = RosProcess(argv, self.env, self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def script(self, name: str, *args: str) -> RosProcess:
        """Start a console script of the venv (or an executable path)."""
        exe = name if os.sep in name else str(Path(sys.executable).parent / name)
        return self.spawn([exe, *args], Path(name).name)

    def module(self, module: str, *args: str) -> RosProcess:
        """Start `python -m module`."""
        return self.spawn([sys.executable, "-m", module, *args], module)

    def python(self, code: str, name: str) -> RosProcess:
        """Start `python -c code`."""
        return self.spawn([sys.executable, "-c", code], name)

    def record(self, topic: str, msg_type: str, count: int, timeout: float,
               reliable: bool = False) -> tuple[RosProcess, Path]:
        """Start a recorder of `count` messages; returns it and the JSON file it writes when done."""
        out = self.tmp / f"record_{topic.strip('/').replace('/', '_')}.json"
        argv = [sys.executable, __file__, "record", topic, msg_type, str(count), str(timeout), str(out)]
        return self.spawn(argv + (["--reliable"] if reliable else []), out.stem), out

    def wait_for_topic(self, topic: str, timeout: float) -> bool:
        """True once some process publishes `topic` (polled from a child), False after `timeout` s."""
        proc = self.spawn([sys.executable, __file__, "wait", topic, str(timeout)], "wait")
        return proc.wait(timeout + 20) == 0

    def close(self) -> None:
        """Stop every process of the session."""
        for proc in reversed(self.procs):
            proc.stop()

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_record(path: Path) -> list[dict]:
    """Messages written by `record` (plain dicts; long byte arrays as {"sha256", "len"})."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else []


def digest(data: bytes) -> dict:
    """How `record` summarises a long byte array."""
    return {"sha256": hashlib.sha256(bytes(data)).hexdigest(), "len": len(data)}


def _plain(value: object) -> object:
    """A ROS message as JSON-ready data."""
    if hasattr(value, "get_fields_and_field_types"):
        return {f: _plain(getattr(value, f)) for f in value.get_fields_and_field_types()}
    if isinstance(value, (bytes, bytearray)) or getattr(value, "typecode", None) == "B":
        return digest(value) if len(value) > BIG_ARRAY else list(value)
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return [_plain(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    return value


def _parse(argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser(description="ROS test helper child")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="subscribe and write COUNT messages to OUT as JSON")
    rec.add_argument("topic")
    rec.add_argument("type", help="e.g. sensor_msgs/msg/Image")
    rec.add_argument("count", type=int)
    rec.add_argument("timeout", type=float)
    rec.add_argument("out", type=Path)
    rec.add_argument("--reliable", action="store_true", help="reliable QoS instead of sensor data")
    wait = sub.add_parser("wait", help="exit 0 once TOPIC has a publisher")
    wait.add_argument("topic")
    wait.add_argument("timeout", type=float)
    return parser.parse_args(argv)


def _child_main(argv: list[str]) -> int:
    import importlib

    import rclpy
    from rclpy.qos import QoSProfile, qos_profile_sensor_data

    args = _parse(argv)
    rclpy.init()
    node = rclpy.create_node(f"test_helper_{os.getpid()}")
    deadline = time.monotonic() + args.timeout
    try:
        if args.cmd == "wait":
            while time.monotonic() < deadline:
                if node.count_publishers(args.topic) > 0:
                    return 0
                time.sleep(0.05)
            return 1
        pkg, kind, name = args.type.split("/")
        cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
        got: list = []
        qos = QoSProfile(depth=10) if args.reliable else qos_profile_sensor_data
        node.create_subscription(cls, args.topic, lambda m: got.append(_plain(m)), qos)
        while len(got) < args.count and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(got[: args.count]))
        os.replace(tmp, args.out)
        print(f"recorded {len(got)} message(s) of {args.type} on {args.topic}", flush=True)
        return 0 if len(got) >= args.count else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
