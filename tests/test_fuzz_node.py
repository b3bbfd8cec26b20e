"""Fuzzing perception_node from another process (bench/robustness.py's client, seeded and bounded): malformed
images, camera_info (huge / non-finite K), vanishing-point and depth labels, compressed data, and bad service calls;
valid frames interleaved must all be answered, every bad call refused with a reason, the node never ends and exits
0 on Ctrl-C. The full-size run (>= 10,000 messages, >= 1,000 calls, RSS, soak) is the benchmark."""

import json
import sys
from pathlib import Path

import pytest
from node_helpers import make_export
from ros_helpers import next_domain_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import robustness  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("export"))


def fuzz(export, tmp_path, *args):
    """Run the fuzz client against a fresh node; the JSON it wrote."""
    out = tmp_path / "fuzz.json"
    robustness.main(["--model", str(export), "--out", str(out), "--domain", str(next_domain_id()), *args])
    return json.loads(out.read_text())


def test_malformed_messages_and_bad_calls_never_stop_the_node(export, tmp_path):
    r = fuzz(export, tmp_path, "--seed", "7", "--messages", "800", "--warmup", "40", "--calls", "120",
             "--collect", "20", "--every", "40")
    report = json.dumps({k: v for k, v in r.items() if k != "log_tail"}, indent=1)[:4000] + r["log_tail"]
    checks = r["checks"]
    for name in ("no_crash", "clean_shutdown", "no_hang", "every_valid_frame_answered", "no_traceback_in_log",
                 "every_bad_call_refused_with_a_reason"):
        assert checks[name], name + "\n" + report
    assert r["valid_frames"] >= 20 and r["service_calls"]["accepted"] == 0, report
    diag = r["node_diagnostics"]
    # every malformed image reached the node and was rejected (counted by kind), the valid ones published
    assert int(diag["frames_rejected"]) == int(diag["problems_image"]) == r["sent"]["image"], report
    assert int(diag["problems_camera_info"]) == r["sent"]["camera_info"], report
    assert int(diag["frames_published"]) >= r["valid_frames"] and int(diag["problems_internal"]) == 0, report
    # while collecting, the bad depth and VP labels were refused frame by frame and the collection still answers
    assert r["collecting"]["start"]["success"] and r["collecting"]["stop"]["success"], report
    assert int(diag["problems_depth_label"]) + int(diag["problems_collect"]) > 0, report
    assert int(diag["problems_vp_label"]) > 0, report
    # warnings are rate-limited by kind: a few lines, not one per bad message
    assert r["log"]["lines"] < 100, report


def test_compressed_transport_decodes_frames_and_rejects_bad_data(export, tmp_path):
    r = fuzz(export, tmp_path, "--transport", "compressed", "--seed", "3", "--messages", "200", "--warmup", "20",
             "--calls", "0", "--collect", "0", "--every", "20")
    report = json.dumps({k: v for k, v in r.items() if k != "log_tail"}, indent=1)[:3000] + r["log_tail"]
    for name in ("no_crash", "clean_shutdown", "no_hang", "every_valid_frame_answered", "no_traceback_in_log"):
        assert r["checks"][name], name + "\n" + report
    diag = r["node_diagnostics"]
    assert int(diag["problems_image"]) == r["sent"]["compressed"] > 0, report
    assert int(diag["frames_published"]) >= r["valid_frames"] >= 10, report
