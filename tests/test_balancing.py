"""Loss balancing: fixed weights and Kendall et al. uncertainty weighting (exp(-s)·L + s)."""

import math

import pytest
import torch

from mtml_core.balancing import LossBalancer

TASKS = ("class", "depth", "vp")


def test_fixed_weights_combine_linearly_and_default_to_one():
    balancer = LossBalancer(TASKS, "fixed", {"depth": 10.0, "vp": 0.5})
    losses = {"class": torch.tensor(2.0), "depth": torch.tensor(0.3), "vp": torch.tensor(4.0)}
    assert float(balancer(losses)) == pytest.approx(2.0 + 3.0 + 2.0)
    assert float(balancer({"depth": torch.tensor(0.3)})) == pytest.approx(3.0)  # absent tasks contribute nothing
    assert not any(p.requires_grad for p in balancer.parameters())


def test_uncertainty_weighting_value_gradient_and_optimum():
    balancer = LossBalancer(TASKS, "uncertainty", {"depth": 2.0})
    s = balancer.log_vars
    assert float(balancer.weights()["depth"].detach()) == pytest.approx(2.0)  # initial weight exp(-s) = fixed weight
    losses = {"class": torch.tensor(2.0), "depth": torch.tensor(0.3), "vp": torch.tensor(0.05)}
    total = balancer(losses)
    want = sum(math.exp(-float(s[j].detach())) * float(losses[t]) + float(s[j].detach()) for j, t in enumerate(TASKS))
    assert float(total.detach()) == pytest.approx(want)
    (grad,) = torch.autograd.grad(total, s)
    for j, t in enumerate(TASKS):  # d/ds (e^{-s} L + s) = 1 - e^{-s} L
        assert float(grad[j]) == pytest.approx(1 - math.exp(-float(s[j].detach())) * float(losses[t]))
    opt = torch.optim.SGD(balancer.parameters(), lr=0.2)
    for _ in range(300):
        opt.zero_grad()
        balancer(losses).backward()
        opt.step()
    for j, t in enumerate(TASKS):  # stationary point s = log L: weight 1/L
        assert float(s[j].detach()) == pytest.approx(math.log(float(losses[t])), abs=1e-3)


def test_bad_balancing_settings_raise_value_error():
    with pytest.raises(ValueError, match="unknown mode"):
        LossBalancer(TASKS, "gradnorm")
    with pytest.raises(ValueError, match="unknown task"):
        LossBalancer(TASKS, "fixed", {"normals": 1.0})
    with pytest.raises(ValueError, match="> 0"):
        LossBalancer(TASKS, "fixed", {"vp": 0.0})
    with pytest.raises(ValueError, match="unknown task"):
        LossBalancer(TASKS)({"normals": torch.tensor(1.0)})
