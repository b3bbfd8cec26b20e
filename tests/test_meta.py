"""Meta-learning: meta-gradients against explicit unrolled references (ANIL head loop and MAML whole-network loop,
second and first order), literal vs joint gradient routing, which parameters each method adapts, input validation,
and a short multi-task meta-training on a tiny synthetic world that must lower every task's adapted query loss."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mtml_core.config import ModelConfig
from mtml_core.evaluation import evaluate_episode
from mtml_core.maml import MAMLLearner
from mtml_core.meta import MetaConfig, MetaLearner, build_learner, model_config_for, validate_batch
from mtml_core.model import MultiTaskModel

H = W = 32
WAY = 5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: one thread avoids OpenMP contention (10-100x slower otherwise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(method, tasks=("class",), dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(tasks=tasks, input_hw=(H, W), filters=8, attention_dim=16, attention_heads=2, n_way=WAY)
    return MultiTaskModel(model_config_for(method, cfg)).to(dtype).train()


def class_batch(t=2, shot=1, query=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def split(k):
        y = torch.arange(WAY).repeat(k).expand(t, -1).clone()
        return torch.randn(t, WAY * k, 3, H, W, generator=g, dtype=dtype), y

    return {"class": (*split(shot), *split(query))}


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


# -- meta-gradients against explicit references ------------------------------------------------------------------

def unrolled_anil(model, batch, steps, lr, first_order):
    """Reference: per-episode Python loop, autograd.grad with create_graph (second order) or detached gradients."""
    sx, sy, qx, qy = batch["class"]
    head = model.heads["class"].fc
    total = 0.0
    for e in range(sx.shape[0]):
        xs, xq = model.backbone(sx[e])[-1].flatten(1), model.backbone(qx[e])[-1].flatten(1)
        theta = [head.weight, head.bias]
        for _ in range(steps):
            g = torch.autograd.grad(F.cross_entropy(F.linear(xs, *theta), sy[e]), theta, create_graph=not first_order)
            theta = [p - lr * gi for p, gi in zip(theta, g)]
        total = total + F.cross_entropy(F.linear(xq, *theta), qy[e]) / sx.shape[0]
    return total


@pytest.mark.parametrize("first_order", [False, True])
def test_anil_meta_gradient_matches_unrolled_reference(first_order):
    model = make_model("anil")
    batch = class_batch()
    learner = MetaLearner(model, MetaConfig(method="anil", inner_steps=2, inner_lr=0.5, first_order=first_order))
    params = list(model.backbone.parameters()) + list(model.heads.parameters())
    loss, _ = learner.meta_loss(batch)
    got = grads(loss, params)
    ref_loss = unrolled_anil(model, batch, 2, 0.5, first_order)
    want = grads(ref_loss, params)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-10)
    assert min(float(r.abs().max()) for r in want[-2:]) > 1e-3  # head (conv biases before BN get exactly 0)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5)


def test_first_order_drops_exactly_the_second_order_terms():
    """Head gradient: second order = mean_e (I - αH0)(I - αH1) v_e, first order = mean_e v_e, with explicit Hessians
    H_k of the support loss at θ_k and v_e = ∇L_query(θ_2) (the same θ_2 for both)."""
    model = make_model("anil")
    batch = class_batch()
    lr, head = 0.5, model.heads["class"]
    sx, sy, qx, qy = batch["class"]
    with torch.no_grad():
        xs = [model.backbone(sx[e])[-1].flatten(1) for e in range(2)]
        xq = [model.backbone(qx[e])[-1].flatten(1) for e in range(2)]
    k, d = head.fc.weight.shape

    def ce(flat, x, y):
        return F.cross_entropy(F.linear(x, flat[:k * d].view(k, d), flat[k * d:]), y)

    theta0 = torch.cat([head.fc.weight.detach().flatten(), head.fc.bias.detach()])
    second, first = 0.0, 0.0
    for e in range(2):
        hessians, theta = [], theta0
        for _ in range(2):
            hessians.append(torch.autograd.functional.hessian(lambda p, e=e: ce(p, xs[e], sy[e]), theta))
            theta = theta - lr * torch.func.grad(ce)(theta, xs[e], sy[e])
        v = torch.func.grad(ce)(theta, xq[e], qy[e])
        eye = torch.eye(len(theta0), dtype=theta0.dtype)
        second = second + (eye - lr * hessians[0]) @ (eye - lr * hessians[1]) @ v / 2
        first = first + v / 2
    for first_order, want in ((False, second), (True, first)):
        learner = MetaLearner(model, MetaConfig(method="anil", inner_steps=2, inner_lr=lr, first_order=first_order))
        loss, _ = learner.meta_loss(batch)
        gw, gb = grads(loss, [head.fc.weight, head.fc.bias])
        torch.testing.assert_close(torch.cat([gw.flatten(), gb]), want, rtol=0, atol=1e-9)
    assert (second - first).abs().max() > 1e-4, "the second-order terms vanish here: the test proves nothing"


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_matches_unrolled_reference(first_order):
    model = make_model("maml")
    batch = class_batch()
    learner = MAMLLearner(model, MetaConfig(method="maml", inner_steps=2, inner_lr=0.1, first_order=first_order))
    names = list(learner.inner_parameters("class"))
    params = list(learner.inner_parameters("class").values())
    loss, _ = learner.meta_loss(batch)
    got = grads(loss, params)

    def net(p, x):
        bb = {k[len("backbone."):]: v for k, v in p.items() if k.startswith("backbone.")}
        hd = {k[len("head."):]: v for k, v in p.items() if k.startswith("head.")}
        return functional_call(model.heads["class"], hd, (functional_call(model.backbone, bb, (x,))[-1],))

    sx, sy, qx, qy = batch["class"]
    ref = 0.0
    for e in range(2):
        p = dict(zip(names, params))
        for _ in range(2):
            g = torch.autograd.grad(F.cross_entropy(net(p, sx[e]), sy[e]), list(p.values()),
                                    create_graph=not first_order)
            p = {k: v - 0.1 * gi for (k, v), gi in zip(p.items(), g)}
        ref = ref + F.cross_entropy(net(p, qx[e]), qy[e]) / 2
    want = grads(ref, params)
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-10)
    for name, g, r in zip(names, got, want):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5, msg=name)


# -- gradient routing in literal and joint modes ------------------------------------------------------------------

def test_literal_mode_routes_modulated_loss_only_to_attention():
    """Literal AM: Φ and θ get exactly the ANIL gradient (eq. 4); Ψ gets the modulated path's gradient (eq. 5)."""
    tasks = ("class", "depth")
    am, anil = make_model("am", tasks), make_model("anil", tasks)
    anil.load_state_dict(am.state_dict(), strict=False)
    batch = class_batch()
    g = torch.Generator().manual_seed(3)
    depth = lambda n: 1.0 + torch.rand(2, n, 1, H, W, generator=g, dtype=torch.float64)  # noqa: E731
    batch["depth"] = (torch.randn(2, 2, 3, H, W, generator=g, dtype=torch.float64), depth(2),
                      torch.randn(2, 3, 3, H, W, generator=g, dtype=torch.float64), depth(3))
    loss_am, stats = MetaLearner(am, MetaConfig(method="am")).meta_loss(batch)
    loss_anil, _ = MetaLearner(anil, MetaConfig(method="anil")).meta_loss(batch)
    shared = [n for n, _ in anil.named_parameters() if n.startswith(("backbone.", "heads."))]
    got = grads(loss_am, [dict(am.named_parameters())[n] for n in shared])
    want = grads(loss_anil, [dict(anil.named_parameters())[n] for n in shared])
    for name, a, b in zip(shared, got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    psi = grads(loss_am, list(am.attention.parameters()) + list(am.label_encoders.parameters()))
    assert all(p is not None and torch.isfinite(p).all() for p in psi)
    assert sum(float(p.abs().sum()) for p in psi) > 0
    assert {"class/modulated", "depth/modulated"} <= set(stats)


@pytest.mark.parametrize("method", ["am", "pam"])
def test_joint_mode_updates_backbone_heads_and_attention_from_one_path(method):
    model = make_model(method)
    learner = MetaLearner(model, MetaConfig(method=method, mode="joint", inner_steps=1))
    before = copy.deepcopy(model.state_dict())
    stats = learner.step(class_batch())
    changed = {n.split(".")[0] for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {"backbone", "heads", "attention"} <= changed
    assert "class/modulated" not in stats
    if method == "pam":
        assert stats["class/kl"] > 0


# -- which parameters adapt ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["am", "pam", "anil", "maml"])
def test_maml_adapts_every_parameter_others_only_the_head(method):
    model = make_model(method, tasks=("class", "vp"))
    learner = build_learner(model, MetaConfig(method=method, inner_steps=2, inner_lr=0.5))
    assert isinstance(learner, MAMLLearner) == (method == "maml")
    inner = learner.inner_parameters("class")
    head_ids = {id(p) for p in model.heads["class"].parameters()}
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    expected = head_ids | backbone_ids if method == "maml" else head_ids
    assert {id(p) for p in inner.values()} == expected
    assert learner.inner_parameters("vp") == {}  # domain adaptation: no inner loop at train time
    sx, sy, _, _ = class_batch()["class"]
    adapted = learner.adapt("class", sx, sy)
    assert set(adapted) == set(inner)
    for name, p in inner.items():
        assert adapted[name].shape == (2, *p.shape)
        for e in range(2):
            assert not torch.equal(adapted[name][e], p), f"{name} was not adapted"


# -- input validation ---------------------------------------------------------------------------------------------

def test_bad_batches_raise_value_error_naming_the_problem():
    model = make_model("am", tasks=("class", "vp"))
    learner = MetaLearner(model, MetaConfig(method="am"))
    sx, sy, qx, qy = class_batch()["class"]
    vp = F.normalize(torch.randn(2, 2, 3, 3, dtype=torch.float64), dim=-1)
    cases = {
        "channels": {"class": (sx[:, :, :2], sy, qx, qy)},
        "N-way mismatch": {"class": (sx, sy + 1, qx, qy)},
        "empty support set": {"class": (sx[:, :0], sy[:, :0], qx, qy)},
        "NaN": {"vp": (sx[:, :2], vp.masked_fill(torch.rand(vp.shape) < 0.3, float("nan")), sx[:, :2], vp)},
        "integers": {"class": (sx, sy.double(), qx, qy)},
        "episodes": {"class": (sx, sy, qx[:1], qy[:1])},
        "not among": {"depth": (sx, sy, qx, qy)},
        "leading shape": {"class": (sx, sy[:, :2], qx, qy)},
    }
    for message, batch in cases.items():
        with pytest.raises(ValueError, match=message):
            learner.step(batch)
        with pytest.raises(ValueError, match=message):
            validate_batch(model, batch)


def test_config_and_model_mismatches_raise_value_error():
    with pytest.raises(ValueError, match="mode"):
        MetaConfig(mode="both")
    with pytest.raises(ValueError, match="unknown key"):
        MetaConfig.from_dict({"inner_stepz": 3})
    with pytest.raises(ValueError, match="task_inner_lr"):
        MetaConfig(task_inner_lr={"colour": 0.1})
    with pytest.raises(ValueError, match="use_attention"):
        MetaLearner(make_model("anil"), MetaConfig(method="am"))
    with pytest.raises(ValueError, match="build_learner"):
        MetaLearner(make_model("maml"), MetaConfig(method="maml"))
    cfg = MetaConfig(method="pam", task_inner_lr={"depth": 0.01})
    assert MetaConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.lr_for("depth") == 0.01 and cfg.lr_for("class") == cfg.inner_lr


def test_state_dict_round_trip_resumes_identically():
    batch = class_batch()
    a = MetaLearner(make_model("am"), MetaConfig(method="am", inner_steps=1, balancing="uncertainty"))
    a.step(batch)
    b = MetaLearner(copy.deepcopy(a.model), MetaConfig(method="am", inner_steps=1, balancing="uncertainty"))
    b.load_state_dict(a.state_dict())
    a.step(batch)
    b.step(batch)
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12, msg=name)
    torch.testing.assert_close(a.balancer.log_vars, b.balancer.log_vars)


# -- a tiny multi-task world --------------------------------------------------------------------------------------

class ToyWorld:
    """10 colour-texture classes (5-way episodes with shuffled labels), and scenes whose pixels encode depth, a
    surface slope (normals) and the camera yaw (vanishing directions), seen through a per-domain gain."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.protos = F.interpolate(torch.randn(10, 3, 4, 4, generator=self.g), size=(H, W), mode="bilinear")

    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.g)

    def _noise(self, *shape, scale=0.1):
        return scale * torch.randn(*shape, generator=self.g)

    def _stack(self, episodes):
        return tuple(torch.stack(v) for v in zip(*episodes))

    def _class_episode(self, shot=2, query=4):
        classes = torch.randperm(10, generator=self.g)[:WAY]
        out = []
        for k in (shot, query):
            y = torch.arange(WAY).repeat(k)
            out += [self.protos[classes[y]] + self._noise(len(y), 3, H, W, scale=0.3), y]
        return out

    def _scenes(self, n, gain):
        field = F.interpolate(self._rand(n, 2, 4, 4), size=(H, W), mode="bilinear")
        depth, slope = 1.0 + 3.0 * field[:, :1], 2 * field[:, 1:] - 1
        normals = F.normalize(torch.cat([slope, 0.5 * torch.ones_like(slope), torch.ones_like(slope)], 1), dim=1)
        yaw = (self._rand(n) - 0.5) * 1.2
        c, s, z = torch.cos(yaw), torch.sin(yaw), torch.zeros(n)
        vp = torch.stack([torch.stack([z, z - 1, z], -1), torch.stack([s, z, c], -1), torch.stack([c, z, -s], -1)], 1)
        yaw_map = yaw.view(n, 1, 1, 1).expand(n, 1, H, W)
        img = torch.cat([depth - 2.5, slope + yaw_map, yaw_map], 1)
        return gain * img + self._noise(n, 3, H, W), {"depth": depth, "normals": normals, "vp": vp}

    def _domain_episode(self, task, shot=4, query=8):
        gain, out = 0.5 + self._rand(1), []
        for k in (shot, query):
            x, labels = self._scenes(k, gain)
            out += [x, labels[task]]
        return out

    def batch(self, episodes=2):
        batch = {"class": self._stack([self._class_episode() for _ in range(episodes)])}
        for task in ("depth", "normals", "vp"):
            batch[task] = self._stack([self._domain_episode(task) for _ in range(episodes)])
        return batch


def adapted_query_losses(model, batches, cfg):
    """Test-time adapted query loss per task (attention + head inner loop), averaged over episodes."""
    out = {}
    for task in batches[0]:
        losses = [evaluate_episode(model, task, sx[e], sy[e], qx[e], qy[e], cfg.inner_steps, cfg.lr_for(task))["loss"]
                  for sx, sy, qx, qy in (b[task] for b in batches) for e in range(sx.shape[0])]
        out[task] = sum(losses) / len(losses)
    return out


@pytest.mark.parametrize("method,mode", [("am", "literal"), ("pam", "joint"), ("maml", "literal")])
def test_short_meta_training_lowers_every_tasks_adapted_query_loss(method, mode):
    model = make_model(method, tasks=("class", "depth", "normals", "vp"), dtype=torch.float32)
    cfg = MetaConfig(method=method, mode=mode, inner_steps=3, inner_lr=0.5, beta=3e-3, gamma=3e-3,
                     task_inner_lr={"depth": 0.05, "normals": 0.05, "vp": 0.05})
    learner = build_learner(model, cfg)
    train, held_out = ToyWorld(0), ToyWorld(100)
    val = [held_out.batch() for _ in range(2)]
    before = adapted_query_losses(model, val, cfg)
    for _ in range(30):
        stats = learner.step(train.batch())
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
    after = adapted_query_losses(model, val, cfg)
    for task in before:
        assert after[task] < 0.9 * before[task], f"{task}: {before[task]:.4f} -> {after[task]:.4f}"
