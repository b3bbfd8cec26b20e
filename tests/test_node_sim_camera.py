"""sim_camera: the frames and ground truth it publishes are the synthetic world's, under one header per frame, and
the environment switches by parameter (refused with the reason when unknown)."""

import numpy as np
import pytest
from node_helpers import child_code, last_json
from ros_helpers import RosSession

from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame

pytestmark = pytest.mark.ros

H, W, SEED = 48, 64, 7

CLIENT = """
import numpy as np
from node_helpers import Client
from mtml.image_conv import depth_from_msg, normals_from_msg, rgb_from_msg
from mtml.messages import k_from_camera_info
c = Client()
topics = {"image": "sensor_msgs/msg/Image", "depth": "sensor_msgs/msg/Image",
          "camera_info": "sensor_msgs/msg/CameraInfo", "ground_truth/normals": "sensor_msgs/msg/Image",
          "ground_truth/vanishing_points": "mtml_interfaces/msg/VanishingPoints",
          "ground_truth/scene": "mtml_interfaces/msg/SceneClass"}
rec = {t: c.record(f"/camera/{t}", ty, reliable=t.startswith("ground")) for t, ty in topics.items()}
stamp = lambda m: m.header.stamp.sec * 10**9 + m.header.stamp.nanosec

def frame_set(t_min):
    # stamps published on every topic after t_min; returns the newest complete one's messages
    sets = [{stamp(m): m for at, m in msgs if at > t_min} for msgs in rec.values()]
    common = set.intersection(*(set(s) for s in sets))
    return None if not common else [s[max(common)] for s in sets]

out, arrays = {}, {}
def grab(name, t_min):
    assert c.spin_until(lambda: frame_set(t_min) is not None, 20), name
    img, depth, info, normals, vp, scene = frame_set(t_min)
    K, hw = k_from_camera_info(info)
    arrays.update({f"{name}_rgb": rgb_from_msg(img), f"{name}_depth": depth_from_msg(depth), f"{name}_K": K,
                   f"{name}_normals": normals_from_msg(normals),
                   f"{name}_vp": np.array([[d.x, d.y, d.z] for d in vp.directions]),
                   f"{name}_pixels": np.array(vp.pixels)})
    out[name] = {"frame_ids": sorted({m.header.frame_id for m in (img, depth, info, normals, vp, scene)}),
                 "encodings": [img.encoding, depth.encoding, normals.encoding], "hw": list(hw),
                 "scene": [scene.label, scene.class_id, scene.score], "at_infinity": list(vp.at_infinity)}

grab("first", 0.0)
out["unknown"] = c.set_parameters("/camera/sim_camera", environment="moon_base")
out["switch"] = c.set_parameters("/camera/sim_camera", environment="street_sandstone")
grab("switched", c.now() + 0.3)
np.savez(@NPZ@, **arrays)
c.close(out)
"""


def test_frames_and_ground_truth_match_the_renderer_and_the_environment_switches(tmp_path):
    with RosSession(tmp_path, interfaces=True) as ros:
        cam = ros.script("sim_camera", "--ros-args", "-r", "__ns:=/camera", "-p", "environment:=corridor_office",
                         "-p", "rate:=10.0", "-p", f"width:={W}", "-p", f"height:={H}", "-p", "frames:=1",
                         "-p", f"seed:={SEED}", "-p", "frame_id:=sim")
        client = ros.python(child_code(CLIENT.replace("@NPZ@", repr(str(tmp_path / "gt.npz")))), "client")
        assert client.wait(60) == 0, client.log() + cam.log()
        assert cam.stop() == 0, cam.log()
    got, arrays = last_json(client.log()), np.load(tmp_path / "gt.npz")
    for name, env in (("first", "corridor_office"), ("switched", "street_sandstone")):
        ref = render_frame(get_env(env), SEED, (H, W))
        assert got[name]["frame_ids"] == ["sim"]  # one header for image, labels and ground truth
        assert got[name]["encodings"] == ["rgb8", "32FC1", "32FC3"] and got[name]["hw"] == [H, W]
        np.testing.assert_array_equal(arrays[f"{name}_rgb"], ref.rgb)
        np.testing.assert_array_equal(arrays[f"{name}_depth"], ref.depth)  # NaN where nothing is hit, too
        np.testing.assert_array_equal(arrays[f"{name}_normals"], ref.normals)
        np.testing.assert_allclose(arrays[f"{name}_K"], ref.K, rtol=1e-6)
        np.testing.assert_allclose(arrays[f"{name}_vp"], ref.vp_dirs, rtol=1e-6)
        np.testing.assert_allclose(arrays[f"{name}_pixels"].reshape(3, 2), ref.vp_pixels, rtol=1e-4)
        assert got[name]["at_infinity"] == ref.vp_at_infinity.tolist()
        assert got[name]["scene"] == [ref.category_name, 0, 1.0]
    assert got["unknown"][0]["successful"] is False
    assert "unknown environment 'moon_base'" in got["unknown"][0]["reason"]
    assert "corridor_office" in got["unknown"][0]["reason"]  # lists the built-in ones
    assert got["switch"] == [{"successful": True, "reason": ""}]
    assert "switched to environment street_sandstone" in cam.log()
