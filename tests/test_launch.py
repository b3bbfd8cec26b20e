"""launch/perception.launch.py, checked without launch_ros (not installable from PyPI): parsed with ast for its
declared arguments and the executables / files it names (which setup.py must install), then run against stand-in
launch modules to check how arguments reach the node (parameters, remappings, namespace, Fast DDS profile)."""

import ast
import glob
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from mtml import params

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "perception.launch.py"
ARGUMENTS = {"params_file", "backend", "namespace", "image_topic", "depth_topic", "camera_info_topic",
             "vp_label_topic", "sim_camera"}
NODE_INPUTS = {"image", "depth_label", "camera_info", "vp_label"}


def calls(tree, name):
    """Every call of `name(...)` in the tree."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def kwarg(call, key):
    return next((k.value for k in call.keywords if k.arg == key), None)


def setup_installs():
    """(package name, console scripts, {installed path: source file}) read from setup.py's setup() call."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(n.value, ast.Constant)}
    setup = calls(tree, "setup")[0]
    env = {"glob": lambda p: sorted(glob.glob(str(ROOT / p))), **consts}
    data_files = eval(compile(ast.Expression(kwarg(setup, "data_files")), "setup.py", "eval"), env)
    installed = {f"{dest}/{Path(src).name}": Path(src) for dest, srcs in data_files for src in srcs}
    scripts = eval(compile(ast.Expression(kwarg(setup, "entry_points")), "setup.py", "eval"), env)
    names = {s.split("=")[0].strip(): s.split("=")[1].strip() for s in scripts["console_scripts"]}
    return eval(compile(ast.Expression(kwarg(setup, "name")), "setup.py", "eval"), env), names, installed


def test_launch_file_declares_the_arguments_and_names_what_setup_py_installs():
    tree = ast.parse(LAUNCH.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared = {c.args[0].value: c for c in calls(tree, "DeclareLaunchArgument")}
    assert set(declared) == ARGUMENTS
    backend_choices = [e.value for e in kwarg(declared["backend"], "choices").elts]
    assert backend_choices == list(params.BACKENDS)
    assert kwarg(declared["backend"], "default_value").value == params.BY_NAME["backend"].default
    assert all(kwarg(c, "description") is not None for c in declared.values())

    package, scripts, installed = setup_installs()
    pkg_const = next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PACKAGE")
    assert pkg_const == package == "mtml"
    executables = {kwarg(c, "executable").value for c in calls(tree, "Node")}
    assert executables == {"perception_node", "sim_camera"} and executables <= set(scripts)
    assert scripts["perception_node"] == "mtml.perception_node:main"
    # every file the launch file joins onto the package share is installed there by setup.py
    joined = [[e.value for e in c.args[0].elts[1:]] for c in calls(tree, "PathJoinSubstitution")]
    assert sorted(joined) == [["config", "fastdds_shm.xml"], ["config", "perception.yaml"]]
    for parts in joined:
        src = installed.get("/".join(["share", package, *parts]))
        assert src is not None and src.resolve().is_file(), parts
    assert installed[f"share/{package}/launch/perception.launch.py"] == LAUNCH
    # the remapped names are the node's own input topics
    node_src = ast.parse((ROOT / "mtml" / "perception_node.py").read_text())
    subscribed = {c.args[1].value for c in ast.walk(node_src) if isinstance(c, ast.Call)
                  and getattr(c.func, "attr", None) == "create_subscription" and isinstance(c.args[1], ast.Constant)}
    assert subscribed == NODE_INPUTS  # (plus image/compressed, derived from `image`, with transport:=compressed)


class Recorded:
    """Stand-in for every launch / launch_ros class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def stand_in(name):
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: type(attr, (Recorded,), {})
    return module


@pytest.fixture
def description(monkeypatch):
    """generate_launch_description() run against stand-in launch modules: {class name: [instances]}."""
    for name in ("launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
                 "launch_ros.actions", "launch_ros.substitutions"):
        monkeypatch.setitem(sys.modules, name, stand_in(name))
    spec = importlib.util.spec_from_file_location("perception_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    desc = module.generate_launch_description()
    out = {}
    for action in desc.args[0]:
        out.setdefault(type(action).__name__, []).append(action)
    return out


def config(value):
    """The launch argument a LaunchConfiguration stand-in refers to."""
    assert type(value).__name__ == "LaunchConfiguration"
    return value.args[0]


def test_launch_description_wires_arguments_into_the_node(description):
    # the RMW and Fast DDS profile go to this file's nodes only, never into the launch context (a parent file that
    # includes this one keeps its own)
    assert "SetEnvironmentVariable" not in description
    nodes = {n.kwargs["executable"]: n.kwargs for n in description["Node"]}
    for kwargs in nodes.values():
        env = kwargs["additional_env"]
        assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
        profile = env["FASTRTPS_DEFAULT_PROFILES_FILE"].args[0]
        assert type(profile[0]).__name__ == "FindPackageShare" and profile[0].args == ("mtml",)
        assert profile[1:] == ["config", "fastdds_shm.xml"]
    node = nodes["perception_node"]
    assert node["package"] == "mtml" and node["name"] == "perception_node"
    assert config(node["namespace"]) == "namespace"
    params_file, overrides = node["parameters"]
    assert config(params_file) == "params_file"
    assert {k: config(v) for k, v in overrides.items()} == {"backend": "backend"}
    remaps = dict(node["remappings"])
    assert {a: config(remaps[a]) for a in ("image", "depth_label", "camera_info")} == {
        "image": "image_topic", "depth_label": "depth_topic", "camera_info": "camera_info_topic"}
    # vp_label: the sim camera's ground truth with sim_camera:=true, else the vp_label_topic argument
    expr = remaps["vp_label"]
    assert type(expr).__name__ == "PythonExpression"
    parts = expr.args[0]
    text = "".join(p if isinstance(p, str) else "{" + config(p) + "}" for p in parts)
    assert text == "'camera/ground_truth/vanishing_points' if '{sim_camera}' == 'true' else '{vp_label_topic}'"
    for sim_camera, vp_label_topic, want in (("true", "x", "camera/ground_truth/vanishing_points"),
                                             ("false", "my/vp", "my/vp")):
        values = {"sim_camera": sim_camera, "vp_label_topic": vp_label_topic}
        assert eval("".join(p if isinstance(p, str) else values[config(p)] for p in parts)) == want
    sim = nodes["sim_camera"]
    assert config(sim["namespace"][0]) == "namespace" and sim["namespace"][1] == "/camera"
    assert config(sim["condition"].args[0]) == "sim_camera"
    defaults = {a.args[0]: a.kwargs["default_value"] for a in description["DeclareLaunchArgument"]}
    assert defaults["params_file"].args[0][1:] == ["config", "perception.yaml"]
    # relative topics: namespace:=robot1 reads /robot1/camera/image
    assert defaults["image_topic"] == "camera/image" and defaults["depth_topic"] == "camera/depth"
    assert defaults["camera_info_topic"] == "camera/camera_info" and defaults["vp_label_topic"] == "vp_label"
