"""bag_camera: replay sensor_msgs/Image frames from a rosbag2 (MCAP or sqlite3) as a camera.

    bag_camera --ros-args -p bag:=../shared/data/bags/euroc_cam_mcap -p rate:=20.0 -p loop:=true \
        -r image:=/camera/image_raw

The bag is read with the `rosbags` package; each CDR record is deserialised by rclpy and published
unchanged (or restamped) on the `image` topic, at the recorded timing or a fixed rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rclpy.utilities import remove_ros_args
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image

from mtml import spin

IMAGE_TYPE = "sensor_msgs/msg/Image"

# name -> (default, description); declared up front and shown by --help.
PARAMETERS: dict[str, tuple[object, str]] = {
    "bag": ("", "rosbag2 directory (or .mcap / .db3 file) to replay; required"),
    "topic": ("", "sensor_msgs/Image topic inside the bag; '' = the first one"),
    "rate": (0.0, "frames per second; 0 = the recorded timing"),
    "loop": (False, "start again at the end instead of exiting"),
    "restamp": (False, "set header.stamp to the current time instead of the recorded stamp"),
    "reliable": (False, "reliable QoS (depth 5) instead of sensor-data best effort"),
    "wait_subscribers": (0, "wait until this many subscribers match before the first frame"),
}


class BagCamera(Node):
    """Publishes the Image records of one bag topic on `image`."""

    def __init__(self) -> None:
        super().__init__("bag_camera")
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=True))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if p["rate"] < 0:
            raise ValueError(f"rate must be >= 0 (0 = recorded timing), got {p['rate']}")
        if p["wait_subscribers"] < 0:
            raise ValueError(f"wait_subscribers must be >= 0, got {p['wait_subscribers']}")
        path = Path(p["bag"]) if p["bag"] else None
        if path is None or not path.exists():
            raise ValueError(f"parameter 'bag' must name an existing rosbag2, got {p['bag']!r}")
        self.rate, self.loop, self.restamp = float(p["rate"]), bool(p["loop"]), bool(p["restamp"])
        self.wait_subscribers = int(p["wait_subscribers"])
        self.reader = Reader(path)
        self.reader.open()
        images = [c for c in self.reader.connections if c.msgtype == IMAGE_TYPE]
        conns = [c for c in images if c.topic == p["topic"]] if p["topic"] else images[:1]
        if not conns:
            self.reader.close()
            found = ", ".join(sorted({c.topic for c in images})) or "none"
            raise ValueError(f"no {IMAGE_TYPE} topic {p['topic']!r} in {path} (image topics: {found})")
        self.connection = conns[0]
        qos = QoSProfile(depth=5) if p["reliable"] else qos_profile_sensor_data
        self.pub = self.create_publisher(Image, "image", qos)
        timing = f"{self.rate:g} Hz" if self.rate else "the recorded timing"
        self.get_logger().info(
            f"replaying {self.connection.msgcount} frames of {self.connection.topic} from {path} at {timing}"
            f" on {self.pub.topic_name}{' in a loop' if self.loop else ''}"
        )

    def run(self, executor: Executor) -> int:
        """Replay (forever with `loop`), serving ROS events on `executor` between frames; returns the frames sent."""
        executor.add_node(self)

        def sleep_until(deadline: float) -> None:
            while (left := deadline - time.monotonic()) > 0:
                executor.spin_once(timeout_sec=min(left, 0.05))

        while self.pub.get_subscription_count() < self.wait_subscribers:
            executor.spin_once(timeout_sec=0.05)
        sent, next_t = 0, time.monotonic()
        while True:
            first_stamp = None
            for _, stamp, raw in self.reader.messages(connections=[self.connection]):
                if self.rate == 0:
                    first_stamp = stamp if first_stamp is None else first_stamp
                    sleep_until(next_t + (stamp - first_stamp) * 1e-9)
                else:
                    sleep_until(next_t)
                    next_t += 1.0 / self.rate
                msg = deserialize_message(raw, Image)
                if self.restamp:
                    msg.header.stamp = self.get_clock().now().to_msg()
                self.pub.publish(msg)
                sent += 1
            if not self.loop or sent == 0:
                return sent
            if self.rate == 0:
                next_t = time.monotonic()

    def destroy_node(self) -> None:
        """Close the bag with the node."""
        self.reader.close()
        super().destroy_node()


def _cli(argv: list[str]) -> None:
    """Handle --help (everything else is a ROS argument)."""
    epilog = "parameters (--ros-args -p NAME:=VALUE):\n" + "\n".join(
        f"  {n:<17} {text} (default {d!r})" for n, (d, text) in PARAMETERS.items()
    )
    parser = argparse.ArgumentParser(
        prog="bag_camera", description=__doc__.splitlines()[0], epilog=epilog + "\nremap the output: -r image:=NAME",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)


def main(args: list[str] | None = None) -> int:
    """Console entry point; exits 0 on Ctrl-C / shutdown, 2 on bad parameters."""
    argv = list(sys.argv if args is None else args)
    _cli(remove_ros_args(argv)[1:])
    return spin.run("bag_camera", argv, BagCamera, spin=lambda node, executor: node.run(executor))


if __name__ == "__main__":
    sys.exit(main())
