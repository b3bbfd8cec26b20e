"""mtml-synth CLI and the sharded dataset format."""

import json
import zipfile

import cv2
import numpy as np
import pytest

from mtml_core.data.cli import main
from mtml_core.data.shards import load_shards
from mtml_core.data.spec import builtin_envs, get_env
from mtml_core.data.synth import render_frame


def test_build_writes_npz_shards_and_manifest_that_reload_exactly(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["build", "--split", "val", "--frames", "5", "--out", str(out), "--size", "24x32",
                 "--shard-size", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    val = builtin_envs("val")
    assert manifest["split"] == "val" and set(manifest["envs"]) == {e.name for e in val}
    assert len(manifest["shards"]) == 3 * len(val) and sum(s["count"] for s in manifest["shards"]) == 5 * len(val)
    for shard in manifest["shards"]:  # plain .npz members, loadable without pickle
        with zipfile.ZipFile(out / shard["file"]) as z:
            assert all(n.endswith(".npy") for n in z.namelist())
        np.load(out / shard["file"], allow_pickle=False)["rgb"]
    frames = load_shards(out)
    assert len(frames) == 5 * len(val)
    f = frames[3]
    ref = render_frame(get_env(f.env), 3, (24, 32))
    assert np.array_equal(f.rgb, ref.rgb) and np.array_equal(f.depth, ref.depth, equal_nan=True)
    assert f.category_name == ref.category_name and np.array_equal(f.vp_dirs, ref.vp_dirs)
    assert "wrote 20 frames" in capsys.readouterr().out


def test_preview_and_list(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["preview", "--env", "room_wood", "hall_neon", "--frames", "2", "--size", "30x40",
                 "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (4 * 32, 4 * 42, 3)  # 4 rows; RGB | depth | normals | VP, 1-px borders
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert all(e.name in text for e in builtin_envs()) and "test categories (12)" in text


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["preview", "--env", "atlantis", "--out", str(tmp_path / "x.png")]) == 2
    assert "atlantis" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "--frames", "2", "--out", str(tmp_path), "--size", "big"])
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="manifest"):
        load_shards(tmp_path)
