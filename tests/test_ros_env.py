"""mtml.ros_env: child-process environments, and the Fast DDS shared-memory profile taking effect."""

import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ros_helpers import RosSession

from mtml import ros_env

ROOT = Path(__file__).resolve().parents[1]
NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
PYDIR = f"python{sys.version_info.major}.{sys.version_info.minor}"


def test_profile_declares_a_16_mib_shm_segment_as_default_participant():
    root = ET.parse(ros_env.FASTDDS_PROFILE).getroot()
    kinds = {d.find("f:transport_id", NS).text: d for d in root.iterfind(".//f:transport_descriptor", NS)}
    shm = [d for d in kinds.values() if d.find("f:type", NS).text == "SHM"]
    assert len(shm) == 1 and int(shm[0].find("f:segment_size", NS).text) == 16 * 2**20
    assert {d.find("f:type", NS).text for d in kinds.values()} == {"SHM", "UDPv4"}
    part = root.find(".//f:participant", NS)
    assert part.get("is_default_profile") == "true"
    assert part.find(".//f:useBuiltinTransports", NS).text == "false"
    assert {t.text for t in part.iterfind(".//f:userTransports/f:transport_id", NS)} == set(kinds)
    assert (ROOT / "config" / "fastdds_shm.xml").read_bytes() == ros_env.FASTDDS_PROFILE.read_bytes()


def test_transport_env_sets_and_clears_the_profile():
    base = {"ROS_LOCALHOST_ONLY": "1", "FASTRTPS_DEFAULT_PROFILES_FILE": "/elsewhere.xml", "KEEP": "x"}
    env = ros_env.transport_env(17, shm=True, base=base)
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(ros_env.FASTDDS_PROFILE)
    assert (env["RMW_IMPLEMENTATION"], env["ROS_AUTOMATIC_DISCOVERY_RANGE"], env["ROS_DOMAIN_ID"]) == (
        "rmw_fastrtps_cpp", "LOCALHOST", "17")
    assert "ROS_LOCALHOST_ONLY" not in env and env["KEEP"] == "x"
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in ros_env.transport_env(17, shm=False, base=base)
    for bad in (-1, 233):
        with pytest.raises(ValueError, match="ROS_DOMAIN_ID"):
            ros_env.transport_env(bad)


def test_overlay_env_prepends_install_space(tmp_path):
    with pytest.raises(FileNotFoundError, match="make ws"):
        ros_env.overlay_env(tmp_path)
    for pkg in ("mtml_interfaces", "mtml"):
        (tmp_path / pkg / "share" / pkg).mkdir(parents=True)
        (tmp_path / pkg / "lib" / PYDIR / "site-packages").mkdir(parents=True)
    (tmp_path / "mtml_interfaces" / "lib" / "libmtml_interfaces__rosidl_generator_c.so").touch()
    env = ros_env.overlay_env(tmp_path, base={"LD_LIBRARY_PATH": "/venv/lib", "PYTHONPATH": ""})
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [str(tmp_path / "mtml_interfaces" / "lib"), "/venv/lib"]
    assert env["AMENT_PREFIX_PATH"].split(os.pathsep) == [str(tmp_path / "mtml"), str(tmp_path / "mtml_interfaces")]
    # From a source checkout, the checkout's `mtml` must not be shadowed by the install space's copy.
    assert env["PYTHONPATH"] == str(tmp_path / "mtml_interfaces" / "lib" / PYDIR / "site-packages")
    again = ros_env.overlay_env(tmp_path, base=env)
    assert again["LD_LIBRARY_PATH"] == env["LD_LIBRARY_PATH"]  # idempotent


def shm_segments(pid):
    """{mapped /dev/shm/fastrtps_* file: mapped bytes} of a process."""
    sizes = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if "/dev/shm/fastrtps_" in line:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            sizes[line.split()[-1]] = sizes.get(line.split()[-1], 0) + hi - lo
    return sizes


NODE = """
import time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("shm_probe")
pub = node.create_publisher(String, "probe", 10)
print("ready", flush=True)
time.sleep(30)
"""


@pytest.mark.ros
@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("shm", [True, False])
def test_profile_gives_participants_a_16_mib_segment(tmp_path, shm):
    with RosSession(tmp_path, shm=shm) as ros:
        proc = ros.python(NODE, "probe")
        deadline = time.monotonic() + 20
        while "ready" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "ready" in proc.log(), proc.log()
        biggest = max(shm_segments(proc.proc.pid).values(), default=0)
    if shm:
        assert biggest >= 16 * 2**20
    else:  # Fast DDS's default segment is 512 KiB
        assert 0 < biggest < 2**20
