"""The colcon install space's perception_node (ros2_ws/install, as after `source install/setup.bash`) starts with
the installed params file, serves a checkpoint (exported once into the cache, like the shipped default) and answers
a frame; a second start reuses the cached export."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from node_helpers import child_code, last_json, make_checkpoint, start_node
from ros_helpers import RosSession

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "colcon").is_file() and shutil.which("colcon") is None,
        reason="colcon is not installed (pip install -r requirements.txt)",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "ros2_ws" / "install"
SITE = INSTALL / "mtml" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
SHARE = INSTALL / "mtml" / "share" / "mtml"

ONE_FRAME = """
from node_helpers import Client
from mtml.image_conv import rgb_to_msg
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
c = Client()
got = c.record("/perception_node/depth", "sensor_msgs/msg/Image")
image = c.publisher("/image")
msg = rgb_to_msg(render_frame(get_env("hall_neon"), 0, (60, 80)).rgb)
msg.header.stamp.sec = 4242
while not got and c.now() < 40:
    image.publish(msg)
    c.spin(0.2)
m = got[0][1] if got else None
c.close({"stamp": m and m.header.stamp.sec, "encoding": m and m.encoding})
"""


@pytest.fixture(scope="module")
def install():
    """Build (incrementally) and return the install space."""
    r = subprocess.run([sys.executable, "scripts/build_ws.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return INSTALL


def test_installed_perception_node_serves_a_checkpoint_and_answers_a_frame(install, tmp_path):
    for rel in ("config/perception.yaml", "launch/perception.launch.py", "config/fastdds_shm.xml"):
        assert (SHARE / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    checkpoint, cache = make_checkpoint(tmp_path / "checkpoint"), tmp_path / "cache"
    with RosSession(tmp_path, interfaces=True) as ros:
        ros.env["PYTHONPATH"] = f"{SITE}:{ros.env['PYTHONPATH']}"  # the install space's copy of the package first
        exe = str(install / "mtml" / "lib" / "mtml" / "perception_node")
        node = ros.spawn([exe, "--ros-args", "--params-file", str(SHARE / "config" / "perception.yaml"),
                          "-p", f"model:={checkpoint}", "-p", f"export_cache_dir:={cache}",
                          "-p", f"profile_dir:={tmp_path / 'profiles'}"], "installed_node")
        client = ros.python(child_code(ONE_FRAME), "client")
        assert client.wait(90) == 0, client.log() + node.log()
        assert node.stop() == 0, node.log()
        exports = list(cache.iterdir())
        again = start_node(ros, checkpoint, tmp_path / "profiles", f"export_cache_dir:={cache}")
        assert again.stop() == 0
    got = last_json(client.log())
    assert got == {"stamp": 4242, "encoding": "32FC1"}
    log = node.log()
    assert f"node code in {SITE / 'mtml'}" in log and "Traceback" not in log
    assert len(exports) == 1 and (exports[0] / "manifest.json").is_file()
    assert f"exporting it once to {exports[0]}" in log and f"serving {exports[0]}" in log
    assert f"using the cached export {exports[0]}" in again.log() and "exporting" not in again.log()
