"""The colcon workspace: scripts/build_ws.py builds mtml_interfaces and the root package from the venv's
wheels; the generated interfaces work between processes; the install space's node scripts start."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ros_helpers import RosSession, child_env, load_record, next_domain_id

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "ros2_ws" / "install"
PYDIR = f"python{sys.version_info.major}.{sys.version_info.minor}"

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "colcon").is_file() and shutil.which("colcon") is None,
        reason="colcon is not installed (pip install -r requirements.txt)",
    ),
]


@pytest.fixture(scope="module")
def install():
    """Build (incrementally: about a second when nothing changed) and return the install space."""
    r = subprocess.run([sys.executable, "scripts/build_ws.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[build_ws] done" in r.stdout
    return INSTALL


def run_child(code, env, cwd=ROOT, timeout=30):
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def load_build_ws():
    spec = importlib.util.spec_from_file_location("build_ws", ROOT / "scripts" / "build_ws.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_export_patch_rewrites_only_missing_python_includes(tmp_path, capsys):
    build_ws = load_build_ws()
    py_inc, np_inc = tmp_path / "py", tmp_path / "np"
    py_inc.mkdir(), np_inc.mkdir()
    cmake = tmp_path / "share" / "foo_msgs" / "cmake"
    cmake.mkdir(parents=True)
    wheel_dirs = ("/opt/python/cp311-cp311/include/python3.11;"
                  "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include;"
                  "${_IMPORT_PREFIX}/include/foo_msgs;/gone/elsewhere")
    broken = cmake / "export_foo_msgs__rosidl_generator_pyExport.cmake"
    broken.write_text(f'set_target_properties(x PROPERTIES\n  INTERFACE_INCLUDE_DIRECTORIES "{wheel_dirs}"\n)\n')
    fine = cmake / "export_foo_msgs__rosidl_generator_cExport.cmake"
    fine.write_text(f'set_target_properties(y PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "{py_inc}")\n')
    before_fine = fine.read_text()
    assert build_ws.patch_cmake_exports(tmp_path, py_inc, np_inc) == 1
    dirs = broken.read_text().split('"')[1].split(";")
    assert dirs == [str(py_inc), str(np_inc), "${_IMPORT_PREFIX}/include/foo_msgs", "/gone/elsewhere"]
    assert fine.read_text() == before_fine
    assert "/gone/elsewhere" in capsys.readouterr().out  # reported, not guessed
    assert build_ws.patch_cmake_exports(tmp_path, py_inc, np_inc) == 0  # idempotent
    assert not list(cmake.glob("*.tmp"))


def test_install_space_has_interfaces_node_scripts_and_profile(install):
    site = install / "mtml_interfaces" / "lib" / PYDIR / "site-packages" / "mtml_interfaces"
    for mod in ("msg/_scene_class.py", "msg/_vanishing_points.py", "srv/_collect.py", "srv/_adapt.py",
                "srv/_profile.py", "srv/_recognize.py"):
        assert (site / mod).is_file(), mod
    assert list(site.glob("mtml_interfaces_s__rosidl_typesupport_fastrtps_c*.so"))
    assert (install / "mtml_interfaces" / "lib" / "libmtml_interfaces__rosidl_typesupport_c.so").is_file()
    for exe in ("perception_node", "sim_camera", "bag_camera"):
        path = install / "mtml" / "lib" / "mtml" / exe
        assert path.is_file() and os.access(path, os.X_OK), path
    for pkg in ("mtml", "mtml_interfaces"):
        assert (install / pkg / "share" / "ament_index" / "resource_index" / "packages" / pkg).is_file()
    profile = (ROOT / "mtml" / "config" / "fastdds_shm.xml").read_bytes()
    assert (install / "mtml" / "share" / "mtml" / "config" / "fastdds_shm.xml").read_bytes() == profile
    assert (install / "mtml" / "lib" / PYDIR / "site-packages" / "mtml" / "config" / "fastdds_shm.xml"
            ).read_bytes() == profile


def test_installed_bag_camera_starts_from_the_install_space(install):
    env = child_env(next_domain_id(), interfaces=True)
    # As after `source install/setup.bash`: the install space's copy of the package comes first.
    env["PYTHONPATH"] = f"{install / 'mtml' / 'lib' / PYDIR / 'site-packages'}:{env['PYTHONPATH']}"
    exe = str(install / "mtml" / "lib" / "mtml" / "bag_camera")
    r = subprocess.run([exe, "--help"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "wait_subscribers" in r.stdout, r.stderr
    r = subprocess.run([exe, "--ros-args", "-p", "bag:=/nonexistent"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "parameter 'bag' must name an existing rosbag2" in r.stderr
    where = run_child("import mtml.bag_camera as m; print(m.__file__)", env, cwd=install)
    assert where.strip().startswith(str(install / "mtml")), where


def test_shell_exports_make_interfaces_importable(install):
    script = ('eval "$("$PY" -m mtml.ros_env --domain 7)" && cd / && '
              '"$PY" -c "from mtml_interfaces.msg import SceneClass; import os; '
              'print(SceneClass(label=\'ok\').label, os.environ[\'ROS_DOMAIN_ID\'])"')
    r = subprocess.run(["bash", "-c", script], env={**os.environ, "PY": sys.executable}, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "7"]


def test_generated_interfaces_have_the_documented_fields(install):
    code = """
import json
from mtml_interfaces.msg import SceneClass, VanishingPoints
from mtml_interfaces.srv import Adapt, Collect, Profile, Recognize
out = {c.__name__: c.get_fields_and_field_types() for c in (SceneClass, VanishingPoints)}
for s in (Adapt, Collect, Profile, Recognize):
    out[s.__name__ + ".Request"] = s.Request.get_fields_and_field_types()
    out[s.__name__ + ".Response"] = s.Response.get_fields_and_field_types()
out["constants"] = [Profile.Request.SAVE, Profile.Request.LOAD, Profile.Request.LIST, Profile.Request.DELETE]
vp = VanishingPoints()
out["vp_defaults"] = [len(vp.directions), vp.pixels.shape[0], len(vp.at_infinity)]
print(json.dumps(out))
"""
    f = json.loads(run_child(code, child_env(next_domain_id(), interfaces=True)))
    assert f["SceneClass"] == {"header": "std_msgs/Header", "class_id": "int32", "label": "string",
                               "score": "float", "labels": "sequence<string>", "scores": "sequence<float>"}
    assert f["VanishingPoints"] == {"header": "std_msgs/Header", "directions": "geometry_msgs/Vector3[3]",
                                    "pixels": "float[6]", "at_infinity": "boolean[3]", "confidence": "float"}
    assert f["vp_defaults"] == [3, 6, 3]
    assert f["Collect.Request"]["vanishing_directions"] == "float[9]"
    assert set(f["Collect.Response"]) == {"success", "message", "frames"}
    assert f["Adapt.Response"]["loss_before"] == "sequence<float>"
    assert f["Profile.Response"]["names"] == "sequence<string>"
    assert f["constants"] == ["save", "load", "list", "delete"]
    assert set(f["Recognize.Response"]) == {"success", "message", "best", "confidence", "switched"}


PUBLISH_VP = """
import math, time, rclpy
from geometry_msgs.msg import Vector3
from mtml_interfaces.msg import VanishingPoints
rclpy.init()
node = rclpy.create_node("vp_pub")
pub = node.create_publisher(VanishingPoints, "vp", 10)
msg = VanishingPoints(confidence=0.75, at_infinity=[False, True, False],
                      pixels=[320.5, -40.25, math.nan, math.nan, 900.0, 250.0])
msg.header.frame_id = "cam"
msg.directions = [Vector3(x=0.0, y=-1.0, z=0.0), Vector3(x=1.0, y=0.0, z=0.0), Vector3(x=0.0, y=0.0, z=1.0)]
while rclpy.ok():
    pub.publish(msg)
    time.sleep(0.05)
"""


def test_custom_message_crosses_processes(install, tmp_path):
    with RosSession(tmp_path, interfaces=True) as ros:
        rec, out = ros.record("/vp", "mtml_interfaces/msg/VanishingPoints", count=2, timeout=20, reliable=True)
        pub = ros.python(PUBLISH_VP, "vp_pub")
        assert rec.wait(30) == 0, rec.log() + pub.log()
    got = load_record(out)[0]
    assert got["header"]["frame_id"] == "cam" and got["confidence"] == 0.75
    assert got["at_infinity"] == [False, True, False]
    assert [d["y"] for d in got["directions"]] == [-1.0, 0.0, 0.0]
    assert got["pixels"][0:2] == [320.5, -40.25] and got["pixels"][4:] == [900.0, 250.0]
    assert all(p != p for p in got["pixels"][2:4])  # NaN survives


SERVE_PROFILE = """
import rclpy
from mtml_interfaces.srv import Profile
rclpy.init()
node = rclpy.create_node("profiles")
store = {"lab", "corridor"}
def handle(req, res):
    if req.command == Profile.Request.SAVE:
        store.add(req.name)
    res.success = req.command in (Profile.Request.SAVE, Profile.Request.LIST)
    res.message = f"{req.command} {req.name}"
    res.names = sorted(store)
    return res
node.create_service(Profile, "profile", handle)
rclpy.spin(node)
"""

CALL_PROFILE = """
import json, rclpy
from mtml_interfaces.srv import Profile
rclpy.init()
node = rclpy.create_node("client")
cli = node.create_client(Profile, "profile")
assert cli.wait_for_service(timeout_sec=20)
fut = cli.call_async(Profile.Request(command=Profile.Request.SAVE, name="kitchen"))
rclpy.spin_until_future_complete(node, fut, timeout_sec=20)
r = fut.result()
print(json.dumps({"success": r.success, "message": r.message, "names": list(r.names)}))
"""


def test_custom_service_crosses_processes(install, tmp_path):
    with RosSession(tmp_path, interfaces=True) as ros:
        server = ros.python(SERVE_PROFILE, "server")
        client = ros.python(CALL_PROFILE, "client")
        assert client.wait(30) == 0, client.log() + server.log()
    reply = json.loads(client.log().strip().splitlines()[-1])
    assert reply == {"success": True, "message": "save kitchen", "names": ["corridor", "kitchen", "lab"]}
