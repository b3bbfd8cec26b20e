"""Model behaviour: channel modulation (w = 0 is the identity, w_c = 1 removes a channel), the episode-grouped
backbone against the module, attention permutation invariance, the P-AM KL, and input validation."""

import copy

import pytest
import torch

from mtml_core.attention import AttentionModule, gaussian_kl
from mtml_core.config import ModelConfig
from mtml_core.episodic import episode_features
from mtml_core.model import Backbone, MultiTaskModel

H = W = 32


def make_model(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(input_hw=(H, W), filters=8, attention_dim=16, attention_heads=2, **kw)
    model = MultiTaskModel(cfg).double()
    for m in model.modules():  # non-trivial BatchNorm affine and running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.3)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def images(n=4, seed=1):
    return torch.randn(n, 3, H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("train", [False, True])
def test_w_zero_reproduces_unmodulated_network_exactly(train):
    model = make_model(medusa_masks=False).train(train)
    x = images()
    plain = model(x)
    w = torch.zeros(model.cfg.multiplier_size, dtype=torch.float64)
    modulated = model(x, {t: model.task_multiplier(t, w) for t in model.cfg.tasks})
    for task in model.cfg.tasks:
        assert torch.equal(plain[task], modulated[task]), task
    grouped_plain = episode_features(model.backbone, x[None], update_stats=False)
    grouped_w0 = episode_features(model.backbone, x[None], 1.0 - w, update_stats=False)
    for a, b in zip(grouped_plain, grouped_w0):
        assert torch.equal(a, b)


@pytest.mark.parametrize("block", [0, 2, 3])
@pytest.mark.parametrize("grouped", [False, True])
def test_w_c_one_removes_channel_downstream_effect(block, grouped):
    model = make_model().train()
    x = images()
    c, C = 5, model.cfg.filters
    w = torch.zeros(model.cfg.multiplier_size, dtype=torch.float64)
    w[block * C + c] = 1.0

    def outputs(weights):
        m = 1.0 - weights
        if grouped:
            feats = [f[0] for f in episode_features(model.backbone, x[None], m, update_stats=False)]
        else:
            feats = model.features(x, m)
        return {t: model.heads[t](model.head_input(t, feats)) for t in model.cfg.tasks}

    before_w, before_0 = outputs(w), outputs(torch.zeros_like(w))
    conv, bn = model.backbone.blocks[block][0], model.backbone.blocks[block][1]
    with torch.no_grad():  # change everything that produces channel c of this block, and nothing else
        conv.weight[c].normal_(0.0, 3.0)
        conv.bias[c] += 2.0
        bn.weight[c] *= -4.0
        bn.bias[c] += 1.5
    after_w, after_0 = outputs(w), outputs(torch.zeros_like(w))
    for task in model.cfg.tasks:
        assert torch.equal(before_w[task], after_w[task]), task
        assert not torch.allclose(before_0[task], after_0[task]), f"{task}: channel {c} had no effect to remove"


@pytest.mark.parametrize("train", [True, False])
def test_grouped_backbone_equals_module_per_episode(train):
    torch.manual_seed(0)
    backbone = Backbone(4, 8).double().train(train)
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_var.uniform_(0.5, 1.5)
    reference = copy.deepcopy(backbone)
    t, n = 3, 4
    x = torch.randn(t, n, 3, H, W, dtype=torch.float64)
    mult = torch.rand(t, 32, dtype=torch.float64) * 2 - 0.5  # some negative: the unfolded path
    per_episode = {k: v.detach() + 0.1 * torch.randn(t, *v.shape, dtype=torch.float64)
                   for k, v in backbone.named_parameters()}
    for m, params in ((mult, None), (mult.abs(), None), (mult.abs(), per_episode)):
        got = episode_features(backbone, x, m, params, update_stats=False)
        for e in range(t):
            ref = copy.deepcopy(reference)
            if params is not None:
                ref.load_state_dict({k: v[e] for k, v in params.items()}, strict=False)
            want = ref(x[e], m[e])
            for b in range(4):
                torch.testing.assert_close(got[b][e], want[b], rtol=1e-10, atol=1e-10)
    if train:  # running statistics: the mean of the episodes' updates
        episode_features(backbone, x, mult.abs())
        refs = [copy.deepcopy(reference) for _ in range(t)]
        for e, ref in enumerate(refs):
            ref(x[e], mult.abs()[e])
        for name, buf in backbone.named_buffers():
            if buf.is_floating_point():
                want = torch.stack([dict(r.named_buffers())[name] for r in refs]).mean(0)
                torch.testing.assert_close(buf, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("probabilistic", [False, True])
def test_attention_is_permutation_invariant(probabilistic):
    torch.manual_seed(0)
    module = AttentionModule(24, 40, dim=16, layers=2, heads=2, init_bias=0.0, probabilistic=probabilistic).double()
    with torch.no_grad():
        module.out.weight.normal_(0.0, 0.5)  # make the output depend visibly on the tokens
    tokens = torch.randn(2, 7, 24, dtype=torch.float64)
    perm = torch.randperm(7)
    out, out_perm = module(tokens), module(tokens[:, perm])
    assert (out.log_sigma is not None) == probabilistic
    torch.testing.assert_close(out, out_perm, rtol=1e-10, atol=1e-12)
    changed = tokens.clone()
    changed[:, 0] += 1.0
    assert not torch.allclose(out.mu, module(changed).mu), "attention output ignores its tokens"


def test_attention_weights_through_model_are_permutation_invariant():
    model = make_model().eval()
    x, y = images(6), torch.tensor([0, 1, 2, 3, 4, 0])
    emb = model.embed(x)
    perm = torch.tensor([3, 5, 0, 1, 4, 2])
    torch.testing.assert_close(model.attention_weights("class", emb, y),
                               model.attention_weights("class", emb[perm], y[perm]), rtol=1e-10, atol=1e-12)


def test_gaussian_kl_zero_iff_equal_and_matches_closed_form():
    mu, ls = torch.randn(3, 10, dtype=torch.float64), 0.3 * torch.randn(3, 10, dtype=torch.float64)
    assert torch.equal(gaussian_kl(mu, ls, mu, ls), torch.zeros(3, dtype=torch.float64))
    mu_p, ls_p = mu + 0.2 * torch.randn_like(mu), ls + 0.1 * torch.randn_like(ls)
    kl = gaussian_kl(mu, ls, mu_p, ls_p)
    assert (kl > 0).all()
    q = torch.distributions.Normal(mu, ls.exp())
    p = torch.distributions.Normal(mu_p, ls_p.exp())
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(-1))
    # only the scale differs: KL = sum(log(sp/sq) + sq²/(2 sp²) - 1/2)
    one = gaussian_kl(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.log(torch.tensor([2.0])))
    torch.testing.assert_close(one, torch.tensor(float(torch.log(torch.tensor(2.0))) + 1 / 8 - 0.5))


def test_bad_images_raise_value_error_naming_the_problem():
    model = make_model()
    with pytest.raises(ValueError, match="channels"):
        model.features(torch.zeros(2, 4, H, W, dtype=torch.float64))
    with pytest.raises(ValueError, match="size"):
        model.features(torch.zeros(2, 3, H + 8, W, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(T, N, 3, H, W\)"):
        episode_features(model.backbone, torch.zeros(1, 2, 1, H, W, dtype=torch.float64))
    with pytest.raises(ValueError, match="multipliers"):
        episode_features(model.backbone, torch.zeros(2, 2, 3, H, W, dtype=torch.float64),
                         torch.ones(3, model.cfg.multiplier_size, dtype=torch.float64))


def test_bad_support_sets_raise_value_error_naming_the_problem():
    model = make_model()
    emb = model.embed(images(3))
    with pytest.raises(ValueError, match="N-way mismatch"):
        model.attention_weights("class", emb, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="empty support set"):
        model.attention_weights("class", emb[:0], torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        model.attention_weights("vp", emb, torch.full((3, 3, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="all NaN"):
        model.attention_weights("depth", emb, torch.full((3, 1, H, W), float("nan"), dtype=torch.float64))
