"""perception_node in its own process: frames in -> the four outputs out (stamped like the input, values equal to
the engine's), parameters checked at start-up and on set-parameter, bad inputs answered or logged with a reason
while the node keeps serving."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from node_helpers import CLASS_NAMES, CONFIG, child_code, last_json, make_export, node_argv, start_node
from ros_helpers import RosSession, child_env, next_domain_id

from mtml import params
from mtml_core.adapt import AdaptationEngine
from mtml_core.data.geometry import project
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame

pytestmark = pytest.mark.ros

SIZE = (60, 80)  # camera frames; the test model's input is 48x64
ENV = "corridor_office"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def served(export, tmp_path_factory):
    """One running node (model = the test export) for the tests of this module: (session, node, tmp dir)."""
    tmp = tmp_path_factory.mktemp("node")
    ros = RosSession(tmp, interfaces=True)
    try:
        node = start_node(ros, export, tmp / "profiles")
        yield ros, node, tmp
    finally:
        ros.close()


STREAM = """
import json
import numpy as np
from node_helpers import OUTPUTS, Client
from mtml.image_conv import depth_from_msg, normals_from_msg, rgb_to_msg
from mtml.messages import camera_info_msg
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
from std_msgs.msg import Header

c = Client()
frames = [render_frame(get_env({env!r}), i, {size!r}) for i in range(3)]
rec = {{t: c.record(t, ty) for t, ty in OUTPUTS.items()}}
image, info = c.publisher("/image"), c.publisher("/camera_info", "sensor_msgs/msg/CameraInfo")
stamps = lambda msgs: {{m.header.stamp.sec for _, m in msgs}}

def stream(until, timeout):
    i = 0
    while not until() and c.now() < timeout:
        h = Header(frame_id=f"cam{{i % 3}}")
        h.stamp.sec = 1000 + i % 3
        info.publish(camera_info_msg(frames[i % 3].K, {size!r}, h))
        image.publish(rgb_to_msg(frames[i % 3].rgb, h))
        c.spin(0.1)
        i += 1

# VP pixels need camera_info, which may reach the node after the first images: wait for answers that had it
with_k = lambda: {{m.header.stamp.sec for _, m in rec["/perception_node/vanishing_points"]
                  if np.isfinite(m.pixels).all()}}
stream(lambda: all(stamps(m) >= {{1000, 1001, 1002}} for m in rec.values()) and with_k() >= {{1000, 1001, 1002}}, 40)
out, arrays = {{}}, {{}}
for topic, msgs in rec.items():
    for _, m in msgs:
        key = f"{{topic.rsplit('/', 1)[1]}}_{{m.header.stamp.sec}}"
        if topic.endswith(("depth", "normals")):
            out[key] = {{"frame_id": m.header.frame_id, "encoding": m.encoding, "hw": [m.height, m.width],
                        "step": m.step, "nanosec": m.header.stamp.nanosec}}
            arrays[key] = depth_from_msg(m) if m.encoding == "32FC1" else normals_from_msg(m)
        elif topic.endswith("vanishing_points"):
            out[key] = {{"frame_id": m.header.frame_id, "dirs": [[d.x, d.y, d.z] for d in m.directions],
                        "pixels": m.pixels.tolist(), "at_infinity": list(m.at_infinity),
                        "confidence": m.confidence}}
        else:
            out[key] = {{"frame_id": m.header.frame_id, "class_id": m.class_id, "label": m.label, "score": m.score,
                        "labels": list(m.labels), "scores": list(m.scores)}}
np.savez({npz!r}, **arrays)
{extra}
c.close(out)
"""

RUNTIME_PARAMS = """
ok = c.set_parameters("/perception_node", output_resolution="input")
depth = rec["/perception_node/depth"]
n = len(depth)
stream(lambda: len(depth) > n and (depth[-1][1].height, depth[-1][1].width) == {size!r}, c.now() + 20)
out["after_set"] = [depth[-1][1].height, depth[-1][1].width]
out["set_ok"] = ok
out["set_bad"] = {{k: c.set_parameters("/perception_node", **{{k: v}}) for k, v in
                  {{"shots": 0, "output_resolution": "4k", "label_sync_tolerance": -1.0, "backend": "torch",
                    "recognize_threshold": 1.5, "uncertainty_samples": 2}}.items()}}
out["topics"] = sorted(n for n, _ in c.node.get_topic_names_and_types())
out["wrong_type"] = c.set_parameters("/perception_node", shots=2.5)
overlay = c.record("/perception_node/overlay", "sensor_msgs/msg/Image")
out["overlay_set"] = c.set_parameters("/perception_node", publish_overlay=True)
stream(lambda: len(overlay) > 0, c.now() + 20)
out["overlay"] = [overlay[0][1].encoding, overlay[0][1].height, overlay[0][1].width] if overlay else None
c.set_parameters("/perception_node", output_resolution="model", publish_overlay=False)
"""


def stream_outputs(ros, tmp, extra=""):
    """Run the streaming client; returns (JSON summary, arrays) of the outputs it got per stamp."""
    npz = tmp / "outputs.npz"
    code = STREAM.format(env=ENV, size=SIZE, npz=str(npz), extra=extra.format(size=SIZE))
    client = ros.python(child_code(code), "client")
    assert client.wait(90) == 0, client.log()
    return last_json(client.log()), dict(np.load(npz))


def test_frames_in_four_outputs_out_with_the_input_header_and_the_engines_values(served, export):
    ros, node, tmp = served
    got, arrays = stream_outputs(ros, tmp)
    engine = AdaptationEngine.from_export(export, "onnxruntime", threads=1)
    hw = tuple(engine.backend.input_hw)
    for i in range(3):
        frame = render_frame(get_env(ENV), i, SIZE)
        pred = engine.infer(frame.rgb, frame.K)  # the node refines VP on the camera_info K
        sec = 1000 + i
        d, n = got[f"depth_{sec}"], got[f"normals_{sec}"]
        assert (d["encoding"], tuple(d["hw"]), d["step"], d["frame_id"]) == ("32FC1", hw, hw[1] * 4, f"cam{i}")
        assert (n["encoding"], tuple(n["hw"]), n["step"], n["frame_id"]) == ("32FC3", hw, hw[1] * 12, f"cam{i}")
        np.testing.assert_allclose(arrays[f"depth_{sec}"], pred.depth, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(arrays[f"normals_{sec}"], pred.normals, rtol=1e-5, atol=1e-6)
        assert np.all(arrays[f"depth_{sec}"] > 0)
        np.testing.assert_allclose(np.linalg.norm(arrays[f"normals_{sec}"], axis=-1), 1.0, atol=1e-4)
        vp = got[f"vanishing_points_{sec}"]
        assert vp["frame_id"] == f"cam{i}"
        np.testing.assert_allclose(vp["dirs"], pred.vp_dirs, rtol=1e-5, atol=1e-6)
        uv, inf = project(frame.K, np.asarray(vp["dirs"]), eps=1e-6)  # pixels of the camera's image
        np.testing.assert_allclose(np.asarray(vp["pixels"]).reshape(3, 2), uv, rtol=1e-4)
        assert vp["at_infinity"] == inf.tolist() and 0.0 <= vp["confidence"] <= 1.0
        scene = got[f"scene_{sec}"]
        assert scene["frame_id"] == f"cam{i}" and scene["labels"] == list(CLASS_NAMES)
        np.testing.assert_allclose(scene["scores"], pred.class_scores, rtol=1e-5, atol=1e-6)
        assert scene["class_id"] == pred.class_id and scene["label"] == CLASS_NAMES[pred.class_id]
        assert scene["score"] == pytest.approx(max(scene["scores"])) and sum(scene["scores"]) == pytest.approx(1.0)
    assert "Traceback" not in node.log()


def test_set_parameter_applies_valid_values_and_refuses_bad_ones_with_the_reason(served):
    ros, node, tmp = served
    got, _ = stream_outputs(ros, tmp, RUNTIME_PARAMS)
    assert got["set_ok"] == [{"successful": True, "reason": ""}]
    assert got["after_set"] == list(SIZE)  # output_resolution=input: outputs at the camera's size
    bad = {k: v[0] for k, v in got["set_bad"].items()}
    assert all(not r["successful"] for r in bad.values()), bad
    # ranges live in the descriptors (rclpy enforces them and `ros2 param describe` shows them)
    assert "shots out of range. Min: 1, Max: 1000, value: 0" in bad["shots"]["reason"]
    assert "must be one of model, input" in bad["output_resolution"]["reason"]
    assert "label_sync_tolerance out of range Min: 0.0, Max: 10.0" in bad["label_sync_tolerance"]["reason"]
    assert "recognize_threshold out of range Min: 0.0, Max: 1.0" in bad["recognize_threshold"]["reason"]
    assert "read-only" in bad["backend"]["reason"]
    # an AM model has no multiplier distribution: uncertainty is refused and ~/depth/std is not advertised
    assert "the served model is not P-AM (meta.method am" in bad["uncertainty_samples"]["reason"]
    assert "/perception_node/depth" in got["topics"] and "/perception_node/depth/std" not in got["topics"]
    assert not got["wrong_type"][0]["successful"]
    assert got["overlay_set"][0]["successful"]
    assert got["overlay"] == ["rgb8", SIZE[0], 5 * SIZE[1]]  # RGB | depth | normals | VP | class at the image size


LAZY = """
from node_helpers import Client
from mtml.image_conv import rgb_to_msg
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
from std_msgs.msg import Header

c = Client()
diag = c.record("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", reliable=True)
image = c.publisher("/image")
frame = render_frame(get_env({env!r}), 0, {size!r})

def stream(until, timeout):
    while not until() and c.now() < timeout:
        h = Header(frame_id="cam")
        h.stamp.sec = 2000
        image.publish(rgb_to_msg(frame.rgb, h))
        c.spin(0.1)

out = {{"set": c.set_parameters("/perception_node", lazy=True)}}
c.spin_until(lambda: len(diag) > 0, 10)
before = c.diagnostics()
n = len(diag)
stream(lambda: len(diag) > n + 2, c.now() + 20)  # three diagnostics periods of frames and no output subscriber
after = c.diagnostics()
out["idle"] = [int(before["frames_idle"]), int(after["frames_idle"])]
out["published"] = [int(before["frames_published"]), int(after["frames_published"])]
out["message"] = diag[-1][1].status[0].message
scene = c.record("/perception_node/scene", "mtml_interfaces/msg/SceneClass")
stream(lambda: len(scene) > 0, c.now() + 20)
out["scene_with_a_subscriber"] = len(scene)
out["unset"] = c.set_parameters("/perception_node", lazy=False)
c.close(out)
"""


def test_lazy_runs_the_model_only_while_an_output_has_a_subscriber(served):
    ros, node, tmp = served
    client = ros.python(child_code(LAZY.format(env=ENV, size=SIZE)), "lazy_client")
    assert client.wait(90) == 0, client.log()
    got = last_json(client.log())
    assert got["set"][0]["successful"] and got["unset"][0]["successful"]
    assert got["idle"][1] > got["idle"][0], got  # frames arrived and were skipped ...
    assert got["published"][1] == got["published"][0], got  # ... none was run through the model
    assert got["message"].startswith("lazy"), got
    assert got["scene_with_a_subscriber"] > 0, got  # a subscriber brings the outputs back


MESSAGES = """
import math
import numpy as np
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from mtml import messages as m
from mtml_core.data.geometry import intrinsics

h = Header(frame_id="cam")
assert m.vp_confidence(np.eye(3)) == 1.0
assert m.vp_confidence(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1.0]])) == 0.0
c45 = m.vp_confidence(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1.0]]))
assert abs(c45 - (1 - math.sqrt(0.5))) < 1e-9, c45
K = intrinsics(60.0, (60, 80))
k2, hw = m.k_from_camera_info(m.camera_info_msg(K, (60, 80), h))
assert hw == (60, 80) and np.allclose(k2, K)
for bad, why in ((CameraInfo(height=60, width=80), "not a pinhole matrix"),
                 (CameraInfo(k=K.ravel().tolist()), "zero-size")):
    try:
        m.k_from_camera_info(bad)
        raise AssertionError("accepted " + why)
    except ValueError as exc:
        assert why in str(exc), exc
vp = m.vp_msg(np.array([[0, -1, 0], [0, 0, 1], [1, 0, 0.0]]), h, K)
assert list(vp.at_infinity) == [True, False, True] and np.isnan(vp.pixels[[0, 1, 4, 5]]).all()
assert np.allclose(vp.pixels[2:4], K[:2, 2]) and vp.confidence == 1.0  # forward direction: principal point
assert np.isnan(m.vp_msg(np.eye(3), h).pixels).all()
s = m.scene_msg(None, (), h)
assert (s.class_id, s.label, s.score) == (-1, "", 0.0)
s = m.scene_msg(np.array([0.2, 0.7, 0.1]), ("a", "b", "c"), h)
assert (s.class_id, s.label, s.labels) == (1, "b", ["a", "b", "c"]) and abs(s.score - 0.7) < 1e-6
try:
    m.scene_msg(np.array([0.5, 0.5]), ("a",), h)
    raise AssertionError("accepted 2 scores for 1 name")
except ValueError:
    pass
depth = np.array([[0.5, 10.0], [np.nan, 50.0]], np.float32)
col = m.depth_colors(depth, 10.0).astype(int)
assert col[0, 0, 0] > col[0, 0, 2] and col[0, 1, 2] > col[0, 1, 0] and (col[1, 0] == 0).all()
assert (col[1, 1] == col[0, 1]).all()  # beyond max_depth: the far end's colour
rgb = np.full((60, 80, 3), 200, np.uint8)
p = m.panel(rgb, None, None, None, None, None, (), height=120)
assert p.shape == (120, 5 * 160, 3) and p[60:, 160 + 10:320 - 10].max() == 0  # no depth: a black panel
assert m.diagnostics_msg(h.stamp, "n", "hw", 1, "warn", {"a": 1.5, "b": "x"}).status[0].level == bytes([1])
print("ok")
"""


def test_message_conversions_and_the_overlay_picture():
    r = subprocess.run([sys.executable, "-c", MESSAGES], env=child_env(next_domain_id(), True), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("args, reason", [
    (["backend:=caffe"], "parameter 'backend': must be one of onnxruntime, torch, tensorrt, got 'caffe'"),
    (["input_size:=[48,65]"], "parameter 'input_size': [48, 65] but the model was exported for [48, 64]"),
    (["shots:=2.5"], "parameter 'shots': expected int"),
    (["uncertainty_samples:=4"], "parameter 'uncertainty_samples': the served model is not P-AM (meta.method am"),
    (["model:=/nonexistent/export"], "parameter 'model': /nonexistent/export is neither an export (no manifest.json)"),
])
def test_invalid_parameters_stop_the_node_at_start_up_with_the_reason(export, tmp_path, args, reason):
    argv = node_argv(export, tmp_path / "profiles", *args)
    r = subprocess.run([sys.executable, "-m", "mtml.perception_node", *argv], env=child_env(next_domain_id(), True),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert reason in r.stderr


def test_params_file_declares_every_parameter_with_a_valid_value():
    values = params.flatten_yaml(yaml.safe_load(CONFIG.read_text()))
    assert set(values) == set(params.BY_NAME)
    checked = params.validate(values)
    for name in values:
        assert type(checked[name]) is type(params.BY_NAME[name].default), name
    assert params.problem("shots", True) is not None  # bool is not an int for ROS
    assert params.problem("overlay_max_depth", 5) is not None  # nor an int a double
    with pytest.raises(ValueError, match="parameter 'input_size'"):
        params.validate({"input_size": [48, 0]})
    assert params.problem("vp_lines_width", 0) is None and params.problem("vp_lines_width", 16) is None
    assert "must be 0 (off) or in [16, 1280]" in params.problem("vp_lines_width", 8)  # LSD needs a real image
    assert params.problem("depth_optimizer", "adam") is None and "must be one of sgd, adam" in params.problem(
        "depth_optimizer", "Adam")


BAD_INPUTS = """
import numpy as np
from node_helpers import Client
from mtml.image_conv import array_to_msg, rgb_to_msg
from mtml.messages import camera_info_msg
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
from sensor_msgs.msg import Image
from std_msgs.msg import Header

c = Client()
c.set_parameters("/perception_node", warn_period=0.0)  # log every problem, to check each reason
depth = c.record("/perception_node/depth", "sensor_msgs/msg/Image")
image, label = c.publisher("/image"), c.publisher("/depth_label")
info = c.publisher("/camera_info", "sensor_msgs/msg/CameraInfo")
frame = render_frame(get_env("corridor_office"), 0, (60, 80))
answered = lambda sec: any(m.header.stamp.sec == sec for _, m in depth)

def header(sec):
    h = Header(frame_id="cam")
    h.stamp.sec = sec
    return h

good = lambda sec: rgb_to_msg(frame.rgb, header(sec))
short_step = good(2)
short_step.step = 80 * 3 - 1
truncated = good(3)
truncated.data = truncated.data[:-7]
bad = [array_to_msg(np.zeros((60, 80), np.uint16), "16UC1", header(1)), short_step, truncated,
       Image(header=header(4), height=0, width=0, encoding="rgb8", step=0)]
bgr = rgb_to_msg(frame.rgb[..., ::-1].copy(), header(5))
bgr.encoding = "bgr8"
out = {}
def send(msgs, until, timeout=20):
    end = c.now() + timeout
    while not until() and c.now() < end:
        for m in msgs:
            image.publish(m)
            c.spin(0.05)
        c.spin(0.1)
send([good(100)], lambda: answered(100))
send(bad + [bgr, good(6)], lambda: answered(5) and answered(6))
out["answered_bad"] = [s for s in (1, 2, 3, 4) if answered(s)]
# collecting with a depth label of the wrong size, then one of an unsupported encoding
out["collect"] = c.call("collect", environment="lab", start=True, class_label="corridor/office")
for sec, lab in ((7, np.ones((30, 40), np.float32)), (8, np.ones((60, 80, 3), np.uint8))):
    enc = "32FC1" if lab.dtype == np.float32 else "rgb8"
    for _ in range(3):
        info.publish(camera_info_msg(frame.K, (60, 80), header(sec)))
        label.publish(array_to_msg(lab, enc, header(sec)))
        c.spin(0.05)
        image.publish(good(sec))
        c.spin(0.6)
out["collect_stop"] = c.call("collect", environment="lab", start=False)
out["adapt_empty"] = c.call("adapt", environment="empty", inner_steps=1)
out["adapt_lab"] = c.call("adapt", environment="lab", inner_steps=1)
out["adapt_path"] = c.call("adapt", environment="../lab", inner_steps=1)
out["adapt_steps"] = c.call("adapt", environment="lab", inner_steps=-3)
out["load_unknown"] = c.call("profiles", command="load", name="nosuch")
out["save_path"] = c.call("profiles", command="save", name="../evil")
out["load_path"] = c.call("profiles", command="load", name="a/b")
out["delete_abs"] = c.call("profiles", command="delete", name="/etc/passwd")
out["collect_path"] = c.call("collect", environment="../x", start=True)
out["collect_bad_vp"] = c.call("collect", environment="lab", start=True, has_vanishing=True,
                              vanishing_directions=[0.0] * 9)
out["bad_command"] = c.call("profiles", command="rename", name="x")
out["save_unadapted"] = c.call("profiles", command="save", name="fresh")
out["recognize_none"] = c.call("recognize", switch_profile=True)
send([good(9)], lambda: answered(9))
out["still_serving"] = answered(9)
c.close(out)
"""


def test_bad_inputs_are_answered_or_logged_with_a_reason_and_the_node_keeps_serving(served):
    ros, node, tmp = served
    client = ros.python(child_code(BAD_INPUTS), "bad_client")
    assert client.wait(120) == 0, client.log() + node.log()
    got = last_json(client.log())
    log = node.log()
    assert got["answered_bad"] == [] and got["still_serving"], json.dumps(got)
    for reason in ("image rejected: unsupported image encoding '16UC1' here (expected one of rgb8, bgr8, mono8)",
                   "image rejected: wrong step 239: a rgb8 row of width 80 needs at least 240 bytes",
                   "image rejected: image data has 14393 bytes, expected step*height = 240*60 = 14400 (truncated)",
                   "image rejected: zero-size image (0x0)",
                   "frame rejected: depth: expected shape (60, 80) (matching the image), got (30, 40)",
                   # a depth label is checked whole when it arrives, before it is kept for matching
                   "depth label rejected: unsupported image encoding 'rgb8' here (expected one of 32FC1, 16UC1)"):
        assert reason in log, reason + "\n" + log
    assert got["collect"]["success"] and got["collect_stop"]["frames"] == 0
    assert not got["adapt_empty"]["success"]
    assert got["adapt_empty"]["message"] == "no frames collected for environment 'empty'"
    assert not got["adapt_lab"]["success"] and "no frames collected" in got["adapt_lab"]["message"]
    assert not got["load_unknown"]["success"] and "profile 'nosuch' not found" in got["load_unknown"]["message"]
    assert not got["adapt_steps"]["success"]
    assert got["adapt_steps"]["message"] == "inner_steps must be in [0, 1000] (0 = the inner_steps parameter), got -3"
    for key in ("save_path", "load_path", "delete_abs", "collect_path", "adapt_path"):
        assert not got[key]["success"] and "no paths" in got[key]["message"], got[key]
    assert not got["collect_bad_vp"]["success"] and "vp_dirs" in got["collect_bad_vp"]["message"]
    assert not got["bad_command"]["success"] and "unknown command 'rename'" in got["bad_command"]["message"]
    assert not got["save_unadapted"]["success"] and "adapt first" in got["save_unadapted"]["message"]
    assert not got["recognize_none"]["success"] and got["recognize_none"]["best"] == ""
    # no profile written (the store's own hidden files, such as its lock, aside), nothing outside the directory
    assert not [p for p in (tmp / "profiles").glob("*") if not p.name.startswith(".")]
    assert not (tmp.parent / "evil.json").exists()
    assert node.proc.poll() is None and "Traceback" not in log


CONVENTIONS = """
import numpy as np
from node_helpers import Client, plain
from mtml.image_conv import rgb_to_msg
from mtml.messages import camera_info_msg
from mtml_core.data.spec import get_env
from mtml_core.data.synth import render_frame
from std_msgs.msg import Header

NS = "/robot1/perception_node"
c = Client()
depth = c.record(NS + "/depth", "sensor_msgs/msg/Image")
infos = c.record(NS + "/depth/camera_info", "sensor_msgs/msg/CameraInfo")
ninfos = c.record(NS + "/normals/camera_info", "sensor_msgs/msg/CameraInfo")
diag = c.record("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", reliable=True)
image, info = c.publisher("/robot1/image"), c.publisher("/robot1/camera_info", "sensor_msgs/msg/CameraInfo")
frame = render_frame(get_env("corridor_office"), 0, (60, 80))
K = frame.K * np.array([[1.5, 1, 1], [1, 1.5, 1], [1, 1, 1]], np.float32)  # not the fallback's 60 degrees

def send(sec, with_info):
    h = Header(frame_id="cam")
    h.stamp.sec = sec
    if with_info:
        info.publish(camera_info_msg(K, (60, 80), h))
        c.spin(0.05)
    image.publish(rgb_to_msg(frame.rgb, h))

def answer(sec, timeout=20):
    end = c.now() + timeout
    while c.now() < end:
        got = {m.header.stamp.sec: m for _, m in infos}
        if sec in got and any(m.header.stamp.sec == sec for _, m in depth):
            return got[sec]
        send(sec, sec >= 200)
        c.spin(0.2)
    return None

out = {}
for sec in (100, 200):  # before any camera_info (the fallback), then with the camera's
    m = answer(sec)
    d = next(m for _, m in depth if m.header.stamp.sec == sec)
    out[str(sec)] = None if m is None else {"hw": [m.height, m.width], "depth_hw": [d.height, d.width],
                                           "k": list(m.k), "p": list(m.p), "frame_id": m.header.frame_id}
out["K"] = K.tolist()
c.spin_until(lambda: any(m.header.stamp.sec == 200 for _, m in ninfos), 5)
out["normals_k"] = next((list(m.k) for _, m in ninfos if m.header.stamp.sec == 200), None)
srv = "rcl_interfaces/srv/DescribeParameters"
out["describe"] = c.call(NS + "/describe_parameters", srv_type=srv, names=["shots", "overlay_max_depth", "backend"])
pubs = c.node.get_publishers_info_by_topic(NS + "/depth")
from rclpy.qos import ReliabilityPolicy
out["depth_reliability"] = [ReliabilityPolicy(p.qos_profile.reliability).name for p in pubs]
c.spin_until(lambda: diag, 10)
out["diag_name"] = diag[-1][1].status[0].name if diag else None
out["list_bad_name"] = c.call(NS + "/profiles", srv_type="mtml_interfaces/srv/Profile", command="list",
                              name="../not a name")
out["huge_steps"] = c.call(NS + "/adapt", srv_type="mtml_interfaces/srv/Adapt", environment="lab",
                           inner_steps=2147483647)
out["collect"] = c.call(NS + "/collect", srv_type="mtml_interfaces/srv/Collect", environment="lab", start=True,
                        class_label="room")
for sec in range(300, 340):  # one frame is all it takes (shots:=1): the collection stops by itself
    send(sec, True)
    c.spin(0.1)
out["stop"] = c.call(NS + "/collect", srv_type="mtml_interfaces/srv/Collect", environment="lab", start=False)
c.close(out)
"""


def test_ros_conventions_camera_info_namespaces_qos_overrides_ranges_and_small_service_fixes(export, tmp_path):
    with RosSession(tmp_path, interfaces=True) as ros:
        node = start_node(ros, export, tmp_path / "profiles", "shots:=1", "collect_rate:=0.0",
                          "qos_overrides./robot1/perception_node/depth.publisher.reliability:=best_effort",
                          remap={"__ns": "/robot1"}, timeout=300)
        client = ros.python(child_code(CONVENTIONS), "conventions")
        assert client.wait(120) == 0, client.log() + node.log()
        got = last_json(client.log())
        assert node.stop() == 0, node.log()
    from mtml_core.data.geometry import intrinsics, scale_intrinsics

    model_hw = (48, 64)
    # REP 118: a CameraInfo for every depth image, same header, at the depth image's (the model's) resolution;
    # K scaled from the camera's, or from the fallback field of view before any camera_info arrived
    for sec, k_camera in (("100", intrinsics(60.0, SIZE)), ("200", np.array(got["K"]))):
        info = got[sec]
        assert info["hw"] == info["depth_hw"] == list(model_hw) and info["frame_id"] == "cam"
        want = scale_intrinsics(k_camera, SIZE, model_hw)
        np.testing.assert_allclose(np.reshape(info["k"], (3, 3)), want, rtol=1e-5)
        np.testing.assert_allclose(np.reshape(info["p"], (3, 4))[:, :3], want, rtol=1e-5)
    assert got["normals_k"] == got["200"]["k"]  # ~/normals/camera_info: the same CameraInfo for the normals image
    ranges = {d["name"]: d for d in got["describe"]["descriptors"]}
    assert [(r["from_value"], r["to_value"]) for r in ranges["shots"]["integer_range"]] == [(1, 1000)]
    assert ranges["overlay_max_depth"]["floating_point_range"][0]["to_value"] == 1e4
    assert ranges["backend"]["read_only"] and not ranges["backend"]["integer_range"]
    assert got["depth_reliability"] == ["BEST_EFFORT"]  # overridden by parameter (the default is reliable)
    assert got["diag_name"] == "mtml: /robot1/perception_node"
    assert got["list_bad_name"]["success"]  # LIST ignores the name, as the .srv says
    assert not got["huge_steps"]["success"] and "inner_steps must be in [0, 1000]" in got["huge_steps"]["message"]
    assert got["collect"]["success"], got
    stop = got["stop"]
    assert stop["success"] and stop["frames"] == 1, stop
    assert stop["message"] == "collection for lab had already stopped by itself with 1 frames"
