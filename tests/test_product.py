"""The product preset (arch: unet), its losses and geometry, the environment sampler and the world data source."""

import math

import numpy as np
import pytest
import torch

from mtml_core.adaptation import adapt_task, imprint_prototypes
from mtml_core.config import ModelConfig
from mtml_core.data.categories import FAMILIES
from mtml_core.data.geometry import canonical_vps
from mtml_core.data.sampler import HUE_BANDS, sample_spec
from mtml_core.data.world import WorldEpisodes, collate_envs, world_batch
from mtml_core.episodic import episode_features
from mtml_core.export import fold_multiplier
from mtml_core.losses import vp_loss
from mtml_core.meta import MetaConfig, build_learner
from mtml_core.metrics import vp_metrics
from mtml_core.model import MultiTaskModel, frame_from_6d

SMALL = dict(arch="unet", widths=(8, 16, 16, 24), decoder_filters=(16, 8, 8), input_hw=(32, 48), n_way=8,
             class_names=("corridor", "room", "hall"), attention_dim=16, attention_heads=2, attention_layers=1)


def model(**over) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(ModelConfig(**{**SMALL, **over})).eval()


def random_rotation(g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return q.float()


def test_unet_outputs_every_task_at_the_input_size():
    m = model()
    out = m(torch.randn(2, 3, 32, 48))
    assert out["depth"].shape == (2, 1, 32, 48) and bool((out["depth"] > 0).all())
    assert out["normals"].shape == (2, 3, 32, 48)
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(2, 32, 48), atol=1e-4)
    assert out["class"].shape == (2, 8)
    vp = out["vp"]
    assert vp.shape == (2, 3, 3)
    assert torch.allclose(vp @ vp.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)  # orthonormal frame
    assert torch.allclose(canonical_vps(vp), vp, atol=1e-6)


def test_unet_config_refuses_bad_widths_and_names():
    with pytest.raises(ValueError, match="widths"):
        ModelConfig(**{**SMALL, "widths": (8, 16, 16)})
    with pytest.raises(ValueError, match="groups of 8"):
        ModelConfig(**{**SMALL, "widths": (8, 12, 16, 24)})
    with pytest.raises(ValueError, match="decoder_filters"):
        ModelConfig(**{**SMALL, "decoder_filters": (8, 8)})
    with pytest.raises(ValueError, match="class_names"):
        ModelConfig(**{**SMALL, "n_way": 2})
    with pytest.raises(ValueError, match="repeated: \\['room'\\]"):
        ModelConfig(**{**SMALL, "class_names": ("room", "hall", "room")})


def test_every_block_is_modulated_and_multipliers_split_by_width():
    m = model()
    x = torch.randn(1, 3, 32, 48)
    mult = torch.ones(m.cfg.multiplier_size)
    mult[8:24] = 0.0  # block 1's 16 channels
    with torch.no_grad():
        feats = m.features(x, mult)
    assert float(feats[1].abs().max()) == 0.0 and float(feats[0].abs().max()) > 0
    with pytest.raises(ValueError, match="multipliers"):
        m.features(x, torch.ones(m.cfg.multiplier_size + 1))


def test_fold_into_groupnorm_equals_the_runtime_multiplier():
    m = model()
    torch.manual_seed(1)
    mult = torch.rand(m.cfg.multiplier_size) * 1.5
    x = torch.randn(2, 3, 32, 48)
    folded = fold_multiplier(m.backbone, mult)
    for a, b in zip(m.backbone(x, mult), folded(x)):
        assert torch.allclose(a, b, atol=1e-5)


def test_episode_features_of_groupnorm_backbone_match_per_episode_calls():
    m = model()
    images = torch.randn(2, 3, 3, 32, 48)
    mult = torch.rand(2, m.cfg.multiplier_size)
    feats = episode_features(m.backbone, images, mult)
    for t in range(2):
        ref = m.backbone(images[t], mult[t])
        for a, b in zip(feats, ref):
            assert torch.allclose(a[t], b, atol=1e-5)


def test_vp_loss_is_invariant_to_signs_and_horizontal_order():
    g = torch.Generator().manual_seed(0)
    y = torch.stack([random_rotation(g) for _ in range(4)])
    flipped = y * torch.tensor([-1.0, 1.0, -1.0]).view(1, 3, 1)
    swapped = y[:, [0, 2, 1]]
    assert float(vp_loss(flipped, y)) < 1e-10
    assert float(vp_loss(swapped, y)) < 1e-10
    assert float(vp_loss(y[:, [1, 0, 2]], y)) > 0.1  # the vertical is not interchangeable
    one = vp_loss(y[:1, [0, 2, 1]] @ torch.tensor([[1.0, 0, 0], [0, math.cos(0.1), -math.sin(0.1)],
                                                    [0, math.sin(0.1), math.cos(0.1)]]), y[:1])
    assert float(one) > 0


def test_vp_loss_and_metric_leave_out_unknown_directions():
    g = torch.Generator().manual_seed(1)
    y = random_rotation(g)[None]
    partial = y.clone()
    partial[:, 1:] = float("nan")  # York Urban: only the vertical is labelled
    pred = y.clone()
    pred[:, 1:] = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # horizontals wrong: must not count
    assert float(vp_loss(pred, partial)) < 1e-10
    assert vp_metrics(pred, partial)["angle_mean"] < 1e-3


def test_vp_metric_pairs_the_horizontals_either_way():
    g = torch.Generator().manual_seed(2)
    y = canonical_vps(random_rotation(g)[None])
    assert vp_metrics(y[:, [0, 2, 1]], y)["angle_mean"] < 1e-3


def test_frame_from_6d_is_a_rotation():
    r = frame_from_6d(torch.randn(5, 6))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5), atol=1e-5)


def test_imprinting_puts_new_categories_on_free_rows_only():
    m = model()
    head = m.heads["class"]
    x = m.head_input("class", m.features(torch.randn(4, 3, 32, 48)))
    labels = torch.tensor([0, 3, 3, 4])
    protos = head.prototypes.detach()
    out = imprint_prototypes(head, protos, x, labels, first_free=3)
    assert torch.equal(out[0], protos[0]) and torch.equal(out[5], protos[5])  # named row / unused row kept
    emb = head.embed(x).detach()
    assert torch.allclose(out[4], emb[3], atol=1e-5)
    assert torch.allclose(out[3], torch.nn.functional.normalize(emb[1:3].mean(0), dim=0), atol=1e-5)


def test_new_category_is_recognised_after_adaptation():
    m = model()
    torch.manual_seed(3)
    a, b = torch.randn(1, 3, 32, 48), torch.randn(1, 3, 32, 48) + 2.0
    sx = torch.cat([a + 0.05 * torch.randn(3, 3, 32, 48), b + 0.05 * torch.randn(3, 3, 32, 48)])
    labels = torch.tensor([3, 3, 3, 4, 4, 4])
    result = adapt_task(m, "class", sx, labels, steps=3, lr=0.01)
    qx = torch.cat([a, b]) + 0.05 * torch.randn(2, 3, 32, 48)
    logits = torch.func.functional_call(m.heads["class"], result.params,
                                        (m.head_input("class", m.features(qx, result.multiplier)),))
    assert logits[:, 3:5].argmax(1).tolist() == [0, 1]


def test_sampler_is_deterministic_and_keeps_hue_bands_apart():
    assert sample_spec(7, "train").to_dict() == sample_spec(7, "train").to_dict()
    assert sample_spec(7, "train").to_dict() != sample_spec(8, "train").to_dict()
    import colorsys

    for split in HUE_BANDS:
        for seed in range(40):
            spec = sample_spec(seed, split)
            assert spec.family in FAMILIES
            for mat in spec.materials().values():
                r, g, b = (c / 255 for c in mat["colors"][0])
                h, s, _ = colorsys.rgb_to_hsv(r, g, b)
                if s > 0.05:  # a grey has no meaningful hue
                    assert any(lo - 0.5 <= h * 360 <= hi + 0.5 for lo, hi in HUE_BANDS[split]), (split, h * 360)
    with pytest.raises(ValueError, match="split"):
        sample_spec(0, "holdout")


def test_world_episodes_give_every_label_with_far_depth_invalid():
    data = WorldEpisodes("train", 2, 1, (24, 32), seed=3, length=4, max_depth=5.0)
    ep = data[1]
    assert ep["x"].shape == (3, 3, 24, 32)
    assert ep["depth"].shape == (3, 1, 24, 32) and ep["normals"].shape == (3, 3, 24, 32)
    d = ep["depth"][torch.isfinite(ep["depth"])]
    assert d.numel() > 0 and float(d.max()) <= 5.0
    assert int(ep["class"].unique().numel()) == 1
    assert torch.equal(data[1]["x"], ep["x"])  # deterministic per item
    batch = world_batch(collate_envs([data[0], data[1]]), ("class", "depth"), 2)
    sx, sy, qx, qy = batch["class"]
    assert sx.shape[:2] == (1, 2) and qx.shape[:2] == (1, 4) and sy.shape == (1, 2)  # one labelled frame per env
    assert batch["depth"][0].shape == (2, 2, 3, 24, 32)


def test_one_product_meta_step_reduces_nothing_to_nan():
    m = model().train()
    data = WorldEpisodes("train", 2, 2, (32, 48), seed=5, length=4)
    batch = world_batch(collate_envs([data[0], data[1]]), m.cfg.tasks, 2)
    learner = build_learner(m, MetaConfig(method="am", mode="joint", first_order=True))
    stats = learner.step(batch)
    assert all(np.isfinite(v) for v in stats.values())
    assert "class/acc" in stats


def test_served_term_trains_theta_under_the_prior_multiplier_and_tracks_the_prior():
    from mtml_core.losses import task_loss
    from mtml_core.objectives import PRIOR_MOMENTUM, am_objective, served_loss

    data = WorldEpisodes("train", 2, 2, (32, 48), seed=5, length=4)
    batch = world_batch(collate_envs([data[0], data[1]]), ("depth",), 2)
    sx, sy, qx, qy = batch["depth"]
    grads, priors = {}, {}
    for weight in (0.0, 1.0):
        m = model().train()
        m.attention["depth"].prior.fill_(0.1)
        obj = am_objective(m, MetaConfig(method="am", mode="joint", served_weight=weight), "depth", sx, sy, qx, qy)
        obj.loss.backward()
        grads[weight] = torch.cat([p.grad.flatten() for p in m.heads["depth"].parameters()])
        priors[weight] = m.attention["depth"].prior.clone()
        assert ("served" in obj.stats) == (weight > 0)
    # eq. (S) by hand: the head on features modulated by 1 - w̄, query frames only
    m = model()
    feats = m.features(qx.flatten(0, 1), m.prior_multiplier("depth"))
    manual = task_loss("depth", m.heads["depth"](m.head_input("depth", feats)), qy.flatten(0, 1))
    theta = dict(m.heads["depth"].named_parameters())
    torch.testing.assert_close(served_loss(m, "depth", theta, qx, qy), manual)
    assert not torch.allclose(grads[0.0], grads[1.0])  # the served term reaches θ
    assert torch.equal(priors[0.0], torch.full_like(priors[0.0], 0.1))  # off: the prior is left alone
    moved = priors[1.0] - 0.1
    assert moved.abs().max() > 0 and moved.abs().max() <= PRIOR_MOMENTUM + 1e-6  # one EMA step towards mean w
    with pytest.raises(ValueError, match="served_weight.*joint"):
        MetaConfig(method="am", mode="literal", served_weight=1.0)
