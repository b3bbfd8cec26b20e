"""Launch perception_node (and optionally the simulated camera) with the package's parameters and Fast DDS
shared-memory profile.

    ros2 launch mtml perception.launch.py image_topic:=/camera/image_raw backend:=tensorrt namespace:=robot1
    ros2 launch mtml perception.launch.py sim_camera:=true       # synthetic camera in /camera as the input
"""

# ruff takes `launch` for this repo's launch/ folder (first party) and would split the block.
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "mtml"


def generate_launch_description() -> LaunchDescription:
    """perception_node with remappable camera topics; sim_camera when `sim_camera:=true`."""
    share = FindPackageShare(PACKAGE)
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="parameters of perception_node (ROS 2 params file)"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", choices=["onnxruntime", "torch", "tensorrt"],
                              description="runtime backend (overrides the params file)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node(s)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image",
                              description="camera image (rgb8/bgr8/mono8)"),
        DeclareLaunchArgument("depth_topic", default_value="/camera/depth",
                              description="aligned depth labels (32FC1 m or 16UC1 mm) for collected frames"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="camera intrinsics"),
        DeclareLaunchArgument("vp_label_topic", default_value="vp_label",
                              description="vanishing-direction labels (mtml_interfaces/VanishingPoints), optional"),
        DeclareLaunchArgument("sim_camera", default_value="false", choices=["true", "false"],
                              description="also start sim_camera in /camera"),
        SetEnvironmentVariable("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([share, "config", "fastdds_shm.xml"])),
        Node(
            package=PACKAGE,
            executable="perception_node",
            name="perception_node",
            namespace=arg("namespace"),
            parameters=[arg("params_file"), {"backend": arg("backend")}],
            remappings=[
                ("image", arg("image_topic")),
                ("depth_label", arg("depth_topic")),
                ("camera_info", arg("camera_info_topic")),
                ("vp_label", arg("vp_label_topic")),
            ],
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package=PACKAGE,
            executable="sim_camera",
            name="sim_camera",
            namespace="camera",
            output="screen",
            condition=IfCondition(arg("sim_camera")),
        ),
    ])
