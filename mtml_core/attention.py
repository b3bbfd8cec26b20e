"""Attention modulator h_j (paper §4.2): support-set tokens → channel weights w, and its probabilistic variant.

Each support example becomes a token ``[x_i ; enc(y_i)]``; L blocks of scaled dot-product self-attention mix the
tokens, a mean-pool makes the result permutation-invariant over the support set, and a linear layer maps it to B·C
values. Both variants return an :class:`AttentionOutput`: AM the logits of ``w = sigmoid(logits)``; P-AM the mean and
log-std of a Gaussian over the logits ``z`` (``w = sigmoid(z)``), whose prior comes from the support set and posterior
from the labelled query set (the ELBO of §4.2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block over a set of tokens: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., S, dim) → same shape."""
        *lead, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        split = [*lead, s, self.heads, d // self.heads]
        q, k, v = (t.reshape(split).transpose(-3, -2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(att.transpose(-3, -2).reshape(*lead, s, d))
        return x + self.mlp(self.norm2(x))


class AttentionOutput(NamedTuple):
    """What h_j outputs for a set of tokens: logits ``mu`` (…, B·C) of the channel weights w = sigmoid(z), and for
    P-AM the log-std ``log_sigma`` of the Gaussian over z (AM: None, z = mu)."""

    mu: torch.Tensor
    log_sigma: torch.Tensor | None = None

    @property
    def weights(self) -> torch.Tensor:
        """Deterministic w = sigmoid(mu): AM's output, P-AM's mean (the prior's at test time)."""
        return torch.sigmoid(self.mu)

    def sample(self) -> torch.Tensor:
        """w = sigmoid(z), z ~ N(mu, sigma) reparameterised (AM: :attr:`weights`)."""
        return self.weights if self.log_sigma is None else sample_weights(self.mu, self.log_sigma)

    def kl(self, prior: AttentionOutput) -> torch.Tensor:
        """KL(self ‖ prior) of two P-AM outputs, summed over the weights."""
        if self.log_sigma is None or prior.log_sigma is None:
            raise ValueError("attention: KL needs probabilistic (P-AM) outputs")
        return gaussian_kl(self.mu, self.log_sigma, prior.mu, prior.log_sigma)


class AttentionModule(nn.Module):
    """h_j: tokens (…, S, token_dim) → :class:`AttentionOutput` over (…, out_dim) weights (AM or P-AM)."""

    def __init__(self, token_dim: int, out_dim: int, dim: int = 64, layers: int = 2, heads: int = 4,
                 init_bias: float = -5.0, probabilistic: bool = False) -> None:
        super().__init__()
        self.token_dim = token_dim
        self.out_dim = out_dim
        self.probabilistic = probabilistic
        self.embed = nn.Linear(token_dim, dim)
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 2 * out_dim if probabilistic else out_dim)
        # w̄: the mean output over training environments, served before any adaptation (zeros = identity);
        # set by mtml_core.adaptation.estimate_prior_weights.
        self.register_buffer("prior", torch.zeros(out_dim))
        nn.init.normal_(self.out.weight, std=1e-3)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[:out_dim] = init_bias  # w = sigmoid(bias) ≈ 0: multipliers start at identity
            if probabilistic:
                self.out.bias[out_dim:] = math.log(0.1)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Permutation-invariant set summary: attention blocks then mean over the support dimension."""
        if tokens.shape[-2] == 0:
            raise ValueError("attention: empty support set (need at least one example)")
        if tokens.shape[-1] != self.token_dim:
            raise ValueError(f"attention: token size {tokens.shape[-1]} != expected {self.token_dim}")
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h).mean(dim=-2))

    def forward(self, tokens: torch.Tensor) -> AttentionOutput:
        """AM: the logits of w. P-AM: mean and (clamped) log-std of the Gaussian over the logits z."""
        out = self.encode(tokens)
        if not self.probabilistic:
            return AttentionOutput(out)
        mu, log_sigma = out.split(self.out_dim, dim=-1)
        return AttentionOutput(mu, log_sigma.clamp(-7.0, 2.0))


def sample_weights(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Reparameterised w = sigmoid(mu + sigma·eps), eps ~ N(0, 1)."""
    eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
    return torch.sigmoid(mu + log_sigma.exp() * eps)


def gaussian_kl(mu_q: torch.Tensor, log_sigma_q: torch.Tensor, mu_p: torch.Tensor,
                log_sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ p) of diagonal Gaussians, summed over the last dimension."""
    var_q, var_p = (2 * log_sigma_q).exp(), (2 * log_sigma_p).exp()
    kl = log_sigma_p - log_sigma_q + (var_q + (mu_q - mu_p) ** 2) / (2 * var_p) - 0.5
    return kl.sum(dim=-1)
