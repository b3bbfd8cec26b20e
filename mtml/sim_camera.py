"""sim_camera: a camera in the built-in synthetic world, with its exact ground truth.

    sim_camera --ros-args -p environment:=corridor_office -p rate:=10.0 -r __ns:=/camera
    ros2 param set /camera/sim_camera environment corridor_neon     # switch (also via ~/set_parameters)

Publishes, all with the same header: `image` (rgb8), `depth` (32FC1 metres, NaN where nothing is hit; REP 118,
aligned with the image), `camera_info`, and the ground truth `ground_truth/normals` (32FC3 camera frame),
`ground_truth/vanishing_points` and `ground_truth/scene` (the environment's category). Frame i of an environment
is `render_frame(spec, seed + i)`; with `frames` > 0 the camera cycles through that many frames.
"""

from __future__ import annotations

import argparse
import sys
import time

from mtml_interfaces.msg import SceneClass, VanishingPoints
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from mtml import spin
from mtml.image_conv import depth_to_msg, normals_to_msg, rgb_to_msg
from mtml.messages import camera_info_msg, vp_msg
from mtml_core.data.spec import EnvSpec, get_env
from mtml_core.data.synth import render_frame

# name -> (default, description, read_only); declared up front and shown by --help.
PARAMETERS: dict[str, tuple[object, str, bool]] = {
    "environment": ("corridor_office", "built-in environment name or spec file; settable while running", False),
    "rate": (10.0, "frames per second", True),
    "width": (320, "image width (pixels)", True),
    "height": (240, "image height (pixels)", True),
    "seed": (0, "seed of the first frame of every environment", False),
    "frames": (0, "distinct frames per environment, cycled; 0 = a new frame every time", False),
    "frame_id": ("camera", "header.frame_id of everything published", True),
    "ground_truth": (True, "also publish ground_truth/{normals,vanishing_points,scene}", True),
}


def _spec(name: object) -> EnvSpec:
    """The environment of a parameter value; ValueError names the built-in ones."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"environment must be a non-empty string, got {name!r}")
    return get_env(name)


class SimCamera(Node):
    """Renders and publishes one frame per timer tick."""

    def __init__(self) -> None:
        super().__init__("sim_camera")
        for name, (default, text, read_only) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=text, read_only=read_only))
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        for name in ("seed", "frames"):
            if (why := self._check(name, p[name])) is not None:
                raise ValueError(why)
        if p["rate"] <= 0:
            raise ValueError(f"rate must be > 0, got {p['rate']}")
        if p["width"] < 8 or p["height"] < 8:
            raise ValueError(f"width and height must be >= 8, got {p['width']}x{p['height']}")
        self.spec = _spec(p["environment"])
        self.size = (int(p["height"]), int(p["width"]))
        self.seed, self.frames, self.frame_id = int(p["seed"]), int(p["frames"]), str(p["frame_id"])
        self.index = 0
        self.add_on_set_parameters_callback(self._on_set)
        sensor = qos_profile_sensor_data
        self.pub_image = self.create_publisher(Image, "image", sensor)
        self.pub_depth = self.create_publisher(Image, "depth", sensor)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", sensor)
        self.gt = bool(p["ground_truth"])
        if self.gt:  # reliable: an evaluating client should get the truth of every frame it got an image of
            reliable = QoSProfile(depth=5)
            self.pub_normals = self.create_publisher(Image, "ground_truth/normals", reliable)
            self.pub_vp = self.create_publisher(VanishingPoints, "ground_truth/vanishing_points", reliable)
            self.pub_scene = self.create_publisher(SceneClass, "ground_truth/scene", reliable)
        self.period = 1.0 / float(p["rate"])
        self.slow_warned = False
        self.timer = self.create_timer(self.period, self.tick)
        self.get_logger().info(f"publishing {self.spec.name} at {p['rate']:g} Hz, {self.size[1]}x{self.size[0]}, "
                               f"on {self.pub_image.topic_name}")

    def _check(self, name: str, value: object) -> str | None:
        if name in ("seed", "frames") and (not isinstance(value, int) or value < 0):
            return f"{name} must be an integer >= 0, got {value!r}"
        if name == "environment":
            try:
                _spec(value)
            except (ValueError, FileNotFoundError) as exc:
                return str(exc)
        return None

    def _on_set(self, params: list) -> SetParametersResult:
        """Validate, then apply: a new environment starts at its `seed` with the next frame."""
        for p in params:
            if (why := self._check(p.name, p.value)) is not None:
                return SetParametersResult(successful=False, reason=why)
        for p in params:
            if p.name == "environment":
                self.spec, self.index = _spec(p.value), 0
                self.get_logger().info(f"switched to environment {self.spec.name}")
            elif p.name in ("seed", "frames"):
                setattr(self, p.name, int(p.value))
                self.index = 0
        return SetParametersResult(successful=True)

    def tick(self) -> None:
        """Render the next frame and publish it with its ground truth."""
        t0 = time.monotonic()
        spec, i = self.spec, self.index
        self.index += 1
        seed = self.seed + (i % self.frames if self.frames else i)
        frame = render_frame(spec, seed, self.size)
        header = Header(frame_id=self.frame_id, stamp=self.get_clock().now().to_msg())
        # labels and intrinsics first: a consumer matching them to the image by stamp has them when it arrives
        self.pub_info.publish(camera_info_msg(frame.K, self.size, header))
        self.pub_depth.publish(depth_to_msg(frame.depth, header))
        if self.gt:
            self.pub_normals.publish(normals_to_msg(frame.normals, header))
            self.pub_vp.publish(vp_msg(frame.vp_dirs, header, frame.K, confidence=1.0))
            self.pub_scene.publish(SceneClass(header=header, class_id=0, label=frame.category_name, score=1.0,
                                              labels=[frame.category_name], scores=[1.0]))
        self.pub_image.publish(rgb_to_msg(frame.rgb, header))
        spent = time.monotonic() - t0
        if spent > self.period and not self.slow_warned:
            self.slow_warned = True
            self.get_logger().warning(f"rendering takes {spent * 1e3:.0f} ms, longer than the {self.period * 1e3:.0f}"
                                      " ms period: the rate will be lower than asked")


def _cli(argv: list[str]) -> None:
    """Handle --help (everything else is a ROS argument)."""
    epilog = "parameters (--ros-args -p NAME:=VALUE):\n" + "\n".join(
        f"  {n:<13} {text} (default {d!r})" for n, (d, text, _) in PARAMETERS.items())
    parser = argparse.ArgumentParser(prog="sim_camera", description=__doc__.splitlines()[0], epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)


def main(args: list[str] | None = None) -> int:
    """Console entry point; exits 0 on Ctrl-C / shutdown, 2 on bad parameters."""
    argv = list(sys.argv if args is None else args)
    _cli(remove_ros_args(argv)[1:])
    return spin.run("sim_camera", argv, SimCamera)


if __name__ == "__main__":
    sys.exit(main())
