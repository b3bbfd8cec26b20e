"""Attention modulator h_j (paper §4.2): support-set tokens → channel weights w, and its probabilistic variant.

Each support example becomes a token ``[x_i ; enc(y_i)]``; L blocks of scaled dot-product self-attention mix the
tokens, a mean-pool makes the result permutation-invariant over the support set, and a linear layer maps it to B·C
values. AM returns ``w = sigmoid(logits)``; P-AM returns the mean and log-std of a Gaussian over the logits ``z``
(``w = sigmoid(z)``), whose prior comes from the support set and posterior from the labelled query set.
"""

from __future__ import annotations

import math

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


class AttentionModule(nn.Module):
    """h_j: tokens (…, S, token_dim) → w (…, out_dim) for AM, or (mu, log_sigma) for P-AM."""

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

    def forward(self, tokens: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """AM: w = sigmoid(logits). P-AM: (mu, log_sigma) of the Gaussian over logits z."""
        out = self.encode(tokens)
        if not self.probabilistic:
            return torch.sigmoid(out)
        mu, log_sigma = out.split(self.out_dim, dim=-1)
        return mu, log_sigma.clamp(-7.0, 2.0)


def sample_weights(mu: torch.Tensor, log_sigma: torch.Tensor, samples: int | None = None) -> torch.Tensor:
    """Reparameterised w = sigmoid(mu + sigma·eps); ``samples`` adds a leading sample dimension."""
    shape = mu.shape if samples is None else (samples, *mu.shape)
    eps = torch.randn(shape, dtype=mu.dtype, device=mu.device)
    return torch.sigmoid(mu + log_sigma.exp() * eps)


def gaussian_kl(mu_q: torch.Tensor, log_sigma_q: torch.Tensor, mu_p: torch.Tensor,
                log_sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ p) of diagonal Gaussians, summed over the last dimension."""
    var_q, var_p = (2 * log_sigma_q).exp(), (2 * log_sigma_p).exp()
    kl = log_sigma_p - log_sigma_q + (var_q + (mu_q - mu_p) ** 2) / (2 * var_p) - 0.5
    return kl.sum(dim=-1)
