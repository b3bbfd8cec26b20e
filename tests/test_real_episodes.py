"""Real depth / normals episodes in meta-training: one domain per episode, frames at the input size, tasks a
source does not label absent, and a world run with a spec that trains them beside the sampled environments."""

import numpy as np
import pytest
import torch
import yaml
from rgbd_helpers import write_sequence

from mtml_core.data.real_episodes import RealEpisodes
from mtml_core.data.sources import load_sources
from training import data as episodes
from training import runconfig
from training.train import train

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def spec(tmp_path, sizes=(12, 12, 3), tasks=("depth", "normals")):
    for j, n in enumerate(sizes):  # sequence j: depths 1 m + j m + i mm
        write_sequence(tmp_path / "data" / "rooms" / f"seq-{j:02d}", n, depth_mm=1000 * (j + 1))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"root": "data", "sources": [
        {"name": "rooms", "loader": "rgbd_sequence", "path": "rooms", "tasks": list(tasks), "split": "train"}]}))
    return path


def test_an_episode_is_k_plus_q_distinct_frames_of_one_domain_at_the_input_size(tmp_path):
    sources = load_sources(spec(tmp_path))
    depth = RealEpisodes(sources, "train", "depth", 3, 2, (12, 16), MEAN, STD, max_depth=80.0)
    assert [d.name for d in depth.domains] == ["seq-00", "seq-01"]  # seq-02 has 3 < 5 frames
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(6):
        sx, sy, qx, qy = depth.sample(rng)
        assert sx.shape == (3, 3, 12, 16) and sy.shape == (3, 1, 12, 16) and qx.shape == (2, 3, 12, 16)
        values = torch.cat([sy, qy]).flatten(1)
        assert torch.all(values == values[:, :1])  # a flat depth per frame, resized by nearest neighbour
        metres = values[:, 0].tolist()
        domain = {int(m) for m in metres}
        assert len(domain) == 1 and len(set(metres)) == 5  # one sequence, five distinct frames of it
        seen |= domain
    assert seen == {1, 2}
    normals = RealEpisodes(sources, "train", "normals", 3, 2, (12, 16), MEAN, STD, max_depth=80.0)
    _, ny, _, _ = normals.sample(rng)
    valid = torch.isfinite(ny).all(1)
    assert valid.float().mean() > 0.5  # pseudo ground truth of a fronto-parallel wall: facing the camera
    torch.testing.assert_close(ny.permute(0, 2, 3, 1)[valid], torch.tensor([0.0, 0.0, -1.0]).expand(
        int(valid.sum()), 3), atol=1e-3, rtol=0)
    near = RealEpisodes(sources, "train", "depth", 3, 2, (12, 16), MEAN, STD, max_depth=1.5)
    kinds = set()
    for _ in range(8):  # seq-00 (1.00x m) stays, seq-01 (2.00x m) is beyond max_depth: invalid, not clipped
        _, sy, _, qy = near.sample(rng)
        y = torch.cat([sy, qy])
        kinds.add("invalid" if torch.isnan(y).all() else "valid" if (y < 1.5).all() else "mixed")
    assert kinds == {"invalid", "valid"}


def test_domains_too_short_or_tasks_not_labelled_are_named(tmp_path):
    sources = load_sources(spec(tmp_path, sizes=(4, 3)))
    with pytest.raises(ValueError, match=r"k_shot \+ n_query = 5 frames: rooms/seq-00 \(4 frames\), rooms/seq-01"):
        RealEpisodes(sources, "train", "depth", 3, 2, (12, 16), MEAN, STD, 80.0)
    with pytest.raises(ValueError, match="no real train domain labels 'vp'"):
        RealEpisodes(sources, "train", "vp", 1, 1, (12, 16), MEAN, STD, 80.0)


def test_a_world_run_trains_real_episodes_beside_the_sampled_environments(tmp_path):
    path = spec(tmp_path, tasks=("depth",))
    cfg = runconfig.load(runconfig.default_config_path(), [
        "model.widths=[8,16,16,24]", "model.decoder_filters=[16,8,8]", "model.input_hw=[32,48]",
        "model.attention_dim=16", "model.attention_heads=2", "model.attention_layers=1", f"data.spec={path}",
        "data.real_episodes=2", "data.envs_per_step=2", "data.k_shot=2", "data.domain_query=2", "data.workers=0",
        "train.steps=2", "train.val_every=2", "train.save_every=2", "train.val_episodes=2", "train.threads=1",
        "train.bf16=false", "train.max_minutes=null"])
    assert set(episodes.real_episodes(cfg, "train")) == {"depth"}  # normals and vp: no real source labels them
    batch = next(episodes.train_batches(cfg, ["depth", "normals"], 0))
    sx, sy, qx, qy = batch["depth"]
    assert sx.shape[:2] == (2 + 2, 2) and qy.shape[:2] == (4, 2)  # 2 environments + 2 real episodes
    assert batch["normals"][0].shape[0] == 2  # the world's only
    real = sy[2:].flatten(2)
    assert torch.all(real == real[..., :1]) and set(real[..., 0].round().flatten().tolist()) <= {1.0, 2.0}
    run = train(cfg, tmp_path / "run", progress=False)
    assert (run / "model.safetensors").is_file()
