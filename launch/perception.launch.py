"""Launch perception_node (and optionally the simulated camera) with the package's parameters and Fast DDS
shared-memory profile.

    ros2 launch mtml perception.launch.py image_topic:=camera/image_raw backend:=tensorrt namespace:=robot1
    ros2 launch mtml perception.launch.py sim_camera:=true       # synthetic camera in <namespace>/camera

Everything runs under `namespace` (relative topic names: `namespace:=robot1` gives /robot1/perception_node
reading /robot1/camera/image, and the sim camera in /robot1/camera). The RMW and the Fast DDS profile are set for
this file's nodes only (additional_env), so a parent launch file that includes this one keeps its own for the
processes it starts.
"""

# ruff takes `launch` for this repo's launch/ folder (first party) and would split the block.
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "mtml"
SIM_VP_TOPIC = "camera/ground_truth/vanishing_points"  # sim_camera's exact vanishing directions


def generate_launch_description() -> LaunchDescription:
    """perception_node with remappable camera topics; sim_camera when `sim_camera:=true`."""
    share = FindPackageShare(PACKAGE)
    arg = LaunchConfiguration
    env = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
           "FASTRTPS_DEFAULT_PROFILES_FILE": PathJoinSubstitution([share, "config", "fastdds_shm.xml"])}
    # with the sim camera, its ground-truth vanishing points are the node's vp_label (so VP can adapt)
    vp_label = PythonExpression(["'", SIM_VP_TOPIC, "' if '", arg("sim_camera"), "' == 'true' else '",
                                 arg("vp_label_topic"), "'"])
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="parameters of perception_node (ROS 2 params file)"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", choices=["onnxruntime", "torch", "tensorrt"],
                              description="runtime backend (overrides the params file)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node(s) and topics"),
        DeclareLaunchArgument("image_topic", default_value="camera/image",
                              description="camera image (rgb8/bgr8/mono8), relative to the namespace"),
        DeclareLaunchArgument("depth_topic", default_value="camera/depth",
                              description="aligned depth labels (32FC1 m or 16UC1 mm) for collected frames"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info",
                              description="camera intrinsics"),
        DeclareLaunchArgument("vp_label_topic", default_value="vp_label",
                              description="vanishing-direction labels (mtml_interfaces/VanishingPoints), optional; "
                                          f"with sim_camera:=true the sim camera's {SIM_VP_TOPIC}"),
        DeclareLaunchArgument("sim_camera", default_value="false", choices=["true", "false"],
                              description="also start sim_camera in <namespace>/camera"),
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
                ("vp_label", vp_label),
            ],
            additional_env=env,
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package=PACKAGE,
            executable="sim_camera",
            name="sim_camera",
            namespace=[arg("namespace"), "/camera"],  # "" -> /camera, robot1 -> /robot1/camera
            additional_env=env,
            output="screen",
            condition=IfCondition(arg("sim_camera")),
        ),
    ])
