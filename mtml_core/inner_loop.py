"""Functional inner loop (paper eq. 2): θ' = θ − α ∇_θ L̂(g_θ(x)), k times, on the support set.

Only the head adapts; its inputs are features computed once by the backbone. Second-order by default (the
meta-gradient flows through the inner updates into θ and into everything that produced x); ``first_order=True``
detaches the inner gradients, which drops exactly the second-order terms. :func:`adapt_head_batched` vectorises
the loop over the episodes of a meta-batch with ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from mtml_core.losses import task_loss

Params = dict[str, torch.Tensor]
OPTIMIZERS = ("sgd", "adam")  # test-time inner loop (adapt_head_best)


def head_params(head: nn.Module) -> Params:
    """The head's parameters θ as a name → tensor dict (the meta-initialisation)."""
    return dict(head.named_parameters())


def head_loss(head: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """L^task(g_params(x), y)."""
    return task_loss(task, functional_call(head, params, (x,)), y)


def _sgd(loss_fn: Callable[[Params], torch.Tensor], params: Params, steps: int, lr: float,
         first_order: bool) -> Params:
    grad_fn = grad(loss_fn)
    for _ in range(steps):
        grads = grad_fn(params)
        params = {k: p - lr * (grads[k].detach() if first_order else grads[k]) for k, p in params.items()}
    return params


def _check(task: str, steps: int, lr: float, support: int) -> None:
    if steps < 0 or lr < 0:
        raise ValueError(f"inner loop: steps ({steps}) and lr ({lr}) must be >= 0")
    if support == 0:
        raise ValueError(f"{task}: empty support set")


def adapt_head(head: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, task: str, steps: int,
               lr: float, first_order: bool = False) -> Params:
    """θ' after ``steps`` SGD steps of rate ``lr`` on the support loss of one episode."""
    _check(task, steps, lr, x.shape[0])
    return _sgd(lambda p: head_loss(head, p, x, y, task), params, steps, lr, first_order)


def adapt_head_best(head: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, task: str, steps: int,
                    lr: float, stop: Callable[[], bool] | None = None, optimizer: str = "sgd"
                    ) -> tuple[Params, float, float]:
    """Test-time variant of :func:`adapt_head` (first order): of the ``steps + 1`` iterates, the one with the lowest
    support loss, with (loss before, that loss). A rate too large for some environment then costs nothing: the
    support loss never ends higher than it started. ``stop()`` is asked before every step; True ends the loop
    early (the best iterate so far is returned; the caller knows why it stopped). ``optimizer``: "sgd" (Eq. 2, the
    meta-learnt rate) or "adam" (``torch.optim.Adam`` at rate ``lr``: per-parameter step sizes, for support sets far
    from the meta-training distribution, e.g. real frames, where a few SGD steps barely move the head)."""
    _check(task, steps, lr, x.shape[0])
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"inner loop: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    grad_value = grad_and_value(lambda p: head_loss(head, p, x, y, task))
    adam = None
    if optimizer == "adam":
        params = {k: p.detach().clone() for k, p in params.items()}
        adam = torch.optim.Adam(list(params.values()), lr=lr)
    best, best_loss, first = params, float("inf"), None
    for i in range(steps + 1):
        last = i == steps or (stop is not None and stop())
        if not last:
            grads, loss = grad_value(params)
        else:
            with torch.no_grad():
                loss = head_loss(head, params, x, y, task)
        value = float(loss)
        first = value if first is None else first
        if value < best_loss:
            best, best_loss = (params if adam is None else {k: p.clone() for k, p in params.items()}), value
        if last:
            break
        if adam is None:
            params = {k: (p - lr * grads[k]).detach() for k, p in params.items()}
        else:  # in place: the iterate kept as best above is a copy
            for k, p in params.items():
                p.grad = grads[k].detach()
            adam.step()
    return best, first, best_loss


def adapt_head_batched(head: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, task: str, steps: int,
                       lr: float, first_order: bool = False) -> Params:
    """θ' for T episodes at once: x (T, S, ...), y (T, S, ...) → params with a leading T dimension."""
    if x.shape[1] == 0:
        raise ValueError(f"{task}: empty support set")

    def one(xe: torch.Tensor, ye: torch.Tensor) -> Params:
        return _sgd(lambda p: head_loss(head, p, xe, ye, task), params, steps, lr, first_order)

    return vmap(one)(x, y)
