"""Test-time head adaptation keeps the best iterate: a too-large rate never leaves the support loss higher."""

import pytest
import torch

from mtml_core.inner_loop import adapt_head, adapt_head_best, head_loss, head_params
from mtml_core.model import ClassHead


def _problem():
    torch.manual_seed(0)
    head = ClassHead(12, 3)
    x = torch.randn(9, 12, 1, 1)
    y = torch.arange(9) % 3
    return head, {k: v.detach() for k, v in head_params(head).items()}, x, y


def test_small_rate_matches_plain_first_order_sgd():
    head, theta, x, y = _problem()
    best, before, after = adapt_head_best(head, theta, x, y, "class", 5, 0.05)
    plain = adapt_head(head, theta, x, y, "class", 5, 0.05, first_order=True)
    assert before == float(head_loss(head, theta, x, y, "class"))
    for k in plain:  # the loss falls monotonically at this rate, so the last iterate is the best
        torch.testing.assert_close(best[k], plain[k].detach())
    assert after == float(head_loss(head, best, x, y, "class")) < before


def test_divergent_rate_returns_the_best_iterate_not_the_last():
    head, theta, x, y = _problem()
    plain = adapt_head(head, theta, x, y, "class", 6, 500.0, first_order=True)
    best, before, after = adapt_head_best(head, theta, x, y, "class", 6, 500.0)
    last = float(head_loss(head, plain, x, y, "class"))
    assert after <= before and after < last
    assert after == float(head_loss(head, best, x, y, "class"))


def test_adam_inner_loop_takes_torch_adam_steps_and_keeps_the_best_iterate():
    head, theta, x, y = _problem()
    best, before, after = adapt_head_best(head, theta, x, y, "class", 4, 0.01, optimizer="adam")
    params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}  # the same steps by hand
    opt = torch.optim.Adam(list(params.values()), lr=0.01)
    for _ in range(4):
        opt.zero_grad()
        head_loss(head, params, x, y, "class").backward()
        opt.step()
    for k in params:  # the loss falls at this rate: the last iterate is the best
        torch.testing.assert_close(best[k], params[k].detach())
    assert after == float(head_loss(head, best, x, y, "class")) < before
    assert all(torch.equal(theta[k], v) for k, v in _problem()[1].items())  # the caller's θ is not modified
    with pytest.raises(ValueError, match="optimizer must be one of"):
        adapt_head_best(head, theta, x, y, "class", 1, 0.01, optimizer="rmsprop")
