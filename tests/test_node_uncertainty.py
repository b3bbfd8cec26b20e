"""~/depth/std across processes: a node serving a small P-AM model, sim_camera as the camera. Before any adaptation
the serving state has no multiplier distribution (nothing on ~/depth/std, diagnostics say why); after collecting
and adapting, ~/depth/std (32FC1, the depth image's header and size) and its camera_info arrive, and the per-task
confidences are on /diagnostics. (AM models: see test_node.py, the parameter is refused and the topic absent.)"""

import numpy as np
import pytest
from node_helpers import SIM_CAMERA_REMAP, child_code, last_json, start_node
from ros_helpers import RosSession
from runtime_helpers import export_small

pytestmark = pytest.mark.ros

ENV = "room_sandstone"

CLIENT = """
import numpy as np
from node_helpers import Client
c = Client()
depth = c.record("/perception_node/depth", "sensor_msgs/msg/Image")
std = c.record("/perception_node/depth/std", "sensor_msgs/msg/Image")
info = c.record("/perception_node/depth/std/camera_info", "sensor_msgs/msg/CameraInfo")
dinfo = c.record("/perception_node/depth/camera_info", "sensor_msgs/msg/CameraInfo")
c.record("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", reliable=True)
out = {}
assert c.spin_until(lambda: len(depth) >= 3 and c.diagnostics().get("uncertainty"), 30), "no outputs"
c.spin(0.5)
out["std_before"] = len(std)
out["diag_before"] = c.diagnostics().get("uncertainty")
out["collect"] = c.call("collect", environment="sand", start=True, class_label="c1")
states = []
def collected():
    states.append(c.diagnostics().get("adaptation_state", ""))
    return any(s.startswith("collecting") for s in states) and states[-1] == "idle"
assert c.spin_until(collected, 30), states[-5:]
out["adapt"] = c.call("adapt", environment="sand", inner_steps=1)
assert c.spin_until(lambda: len(std) >= 4 and "confidence_depth" in c.diagnostics(), 30), "no ~/depth/std"
c.spin(0.5)  # each topic has its own reader: a std image may be taken before the camera_info published just before it
stamp = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)
depth_by = {stamp(m): m for _, m in depth}
dinfo_by = {stamp(m): m for _, m in dinfo}
info_by = {stamp(m): m for _, m in info}
rows = []
for _, m in std[-4:-1]:  # not the newest: its camera_info may still be on its way
    d = depth_by.get(stamp(m))
    arr = np.frombuffer(bytes(m.data), "<f4").reshape(m.height, m.width)  # raw: depth_from_msg makes 0 NaN
    rows.append({"encoding": m.encoding, "hw": [m.height, m.width], "step": m.step, "frame_id": m.header.frame_id,
                 "depth_hw": None if d is None else [d.height, d.width], "depth_frame": d and d.header.frame_id,
                 "finite": bool(np.isfinite(arr).all()), "min": float(arr.min()), "max": float(arr.max()),
                 "info": stamp(m) in info_by and [info_by[stamp(m)].height, info_by[stamp(m)].width],
                 "info_k_equal": stamp(m) in info_by and stamp(m) in dinfo_by
                 and list(info_by[stamp(m)].k) == list(dinfo_by[stamp(m)].k)})
out["std"] = rows
out["diag"] = c.diagnostics()
out["set_bad"] = c.set_parameters("/perception_node", uncertainty_samples=17)
out["set_off"] = c.set_parameters("/perception_node", uncertainty_samples=0)
c.spin(0.5)
n = len(std)
c.spin(1.0)
out["std_while_off"] = len(std) - n
c.close(out)
"""


@pytest.fixture(scope="module")
def pam_export(tmp_path_factory):
    """A small P-AM model whose heads depend on their features (node_helpers' plain random init has a depth head
    that ignores them, so any multiplier gives the same depth and the std is 0)."""
    out = tmp_path_factory.mktemp("pam_export")
    export_small(out, probabilistic=True)
    return out


def test_depth_std_arrives_with_the_depth_header_and_size_after_adapting_a_pam_model(pam_export, tmp_path):
    params = ("shots:=2", "collect_rate:=5.0", "inner_steps:=1", "uncertainty_samples:=4", "uncertainty_period:=2")
    with RosSession(tmp_path, interfaces=True) as ros:
        cam = ros.module("mtml.sim_camera", "--ros-args", "-r", "__ns:=/camera", "-p", f"environment:={ENV}",
                         "-p", "rate:=10.0", "-p", "width:=80", "-p", "height:=60")
        node = start_node(ros, pam_export, tmp_path / "profiles", *params, remap=SIM_CAMERA_REMAP)
        client = ros.python(child_code(CLIENT), "client")
        assert client.wait(120) == 0, client.log() + node.log() + cam.log()
        got = last_json(client.log())
        assert node.stop() == 0, node.log()
    assert got["std_before"] == 0 and got["diag_before"].startswith("no distribution"), got
    assert got["adapt"]["success"], got["adapt"]
    for row in got["std"]:
        assert row["encoding"] == "32FC1" and row["hw"] == [48, 64] and row["step"] == 64 * 4, row
        assert row["depth_hw"] == row["hw"] and row["depth_frame"] == row["frame_id"], row  # a depth of that stamp
        assert row["finite"] and row["min"] >= 0.0 and row["max"] > 0.0, row
        assert row["info"] == [48, 64] and row["info_k_equal"], row  # REP 118: the depth image's camera_info
    diag = got["diag"]
    assert diag["uncertainty"] == "on: 4 samples every 2 frame(s)", diag
    for task in ("depth", "normals", "vp", "class"):
        assert 0.0 <= float(diag[f"confidence_{task}"]) <= 1.0, diag
    assert float(diag["uncertainty_ms"]) > 0 and float(diag["depth_std_mean_m"]) > 0, diag
    assert not got["set_bad"][0]["successful"] and "Max: 16" in got["set_bad"][0]["reason"], got["set_bad"]
    assert got["set_off"][0]["successful"] and got["std_while_off"] == 0, got
    assert "Traceback" not in node.log()
    assert np.isfinite(float(diag["depth_std_mean_m"]))
