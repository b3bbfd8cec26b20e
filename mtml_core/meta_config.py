"""Meta-training settings: :class:`MetaConfig`, and the model each method needs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtml_core.balancing import BALANCING
from mtml_core.config import TASKS, ModelConfig
from mtml_core.model import MultiTaskModel

METHODS = ("am", "pam", "anil", "maml")
MODES = ("literal", "joint")


@dataclass
class MetaConfig:
    """Meta-training hyper-parameters.

    ``method``: am | pam | anil | maml. ``inner_steps``/``inner_lr``: k and α of the inner loop (``task_inner_lr``
    overrides α per task; domain tasks use it at test time). ``beta``: Adam rate for Φ, θ, label encoders, Medusa
    masks and uncertainty log-variances; ``gamma``: Adam rate for Ψ. ``first_order``: drop second-order terms.
    ``mode``: literal | joint. ``kl_weight``: P-AM KL factor. ``balancing``: fixed | uncertainty, ``task_weights``
    the fixed weights (default 1; initial weights for uncertainty). ``max_grad_norm``: clip the total gradient norm
    (None: off). ``served_weight``: weight of the served term (joint mode, pooled tasks: the loss of θ under the
    attention prior's multiplier, what the node publishes before adapting; :func:`mtml_core.objectives.served_loss`);
    0: off.
    """

    method: str = "am"
    inner_steps: int = 5
    inner_lr: float = 0.1
    task_inner_lr: dict[str, float] = field(default_factory=dict)
    beta: float = 1e-3
    gamma: float = 1e-3
    first_order: bool = False
    mode: str = "literal"
    kl_weight: float = 0.01
    balancing: str = "fixed"
    task_weights: dict[str, float] = field(default_factory=dict)
    max_grad_norm: float | None = None
    served_weight: float = 0.0

    def __post_init__(self) -> None:
        self.task_inner_lr = {str(k): float(v) for k, v in dict(self.task_inner_lr).items()}
        self.task_weights = {str(k): float(v) for k, v in dict(self.task_weights).items()}
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        choices = {"method": METHODS, "mode": MODES, "balancing": BALANCING}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise ValueError(f"inner_steps: must be an integer >= 0, got {self.inner_steps!r}")
        if self.served_weight and self.mode != "joint":
            raise ValueError(f"served_weight: {self.served_weight!r} needs mode 'joint' (literal mode trains θ on the "
                             f"plain path only)")
        for name in ("inner_lr", "beta", "gamma", "kl_weight", "served_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("task_inner_lr", "task_weights"):
            unknown = sorted(set(getattr(self, name)) - set(TASKS))
            if unknown:
                raise ValueError(f"{name}: unknown task(s) {unknown}")
        if any(not v >= 0 for v in self.task_inner_lr.values()):
            raise ValueError(f"task_inner_lr: rates must be >= 0, got {self.task_inner_lr}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm: must be > 0 or None, got {self.max_grad_norm!r}")

    def lr_for(self, task: str) -> float:
        """Inner-loop rate α for ``task``."""
        return self.task_inner_lr.get(task, self.inner_lr)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML/JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaConfig:
        """Build from a dict, refusing unknown keys by name."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"meta config: unknown key(s) {unknown}")
        return cls(**data)


def model_config_for(method: str, cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with the attention settings ``method`` needs (AM: attention; P-AM: probabilistic; ANIL/MAML: none)."""
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {list(METHODS)}")
    return dataclasses.replace(cfg, use_attention=method in ("am", "pam"), probabilistic=method == "pam")


def check_model(method: str, model: MultiTaskModel) -> None:
    """Raise ValueError when ``model``'s attention settings do not match ``method`` (see :func:`model_config_for`)."""
    want = model_config_for(method, model.cfg)
    if (want.use_attention, want.probabilistic) != (model.cfg.use_attention, model.cfg.probabilistic):
        raise ValueError(f"method {method!r} needs use_attention={want.use_attention}, probabilistic="
                         f"{want.probabilistic}; the model has use_attention={model.cfg.use_attention}, "
                         f"probabilistic={model.cfg.probabilistic} (build it with model_config_for)")
