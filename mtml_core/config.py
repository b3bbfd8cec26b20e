"""Model configuration: everything needed to rebuild a model, with validation and a YAML/JSON-safe dict form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TASKS = ("class", "depth", "normals", "vp")
DENSE_TASKS = ("depth", "normals")
TASK_ADAPTATION = ("class",)
DOMAIN_ADAPTATION = ("depth", "normals", "vp")


@dataclass
class ModelConfig:
    """Architecture hyper-parameters (paper §4.2 / §5 defaults).

    ``tasks``: subset of :data:`TASKS`. ``blocks``/``filters``: backbone B and C. ``input_hw``: network input size.
    ``n_way``: classification outputs. ``attention_layers``/``attention_dim``: L and d_model of each attention
    module. ``probabilistic``: P-AM instead of AM. ``use_attention``: False gives the ANIL multi-head baseline.
    ``medusa_masks``: learned per-task channel masks on every block (Medusa shared-feature attention).
    ``multiscale_heads``: tasks whose head reads all blocks' features (Medusa multi-scale head).
    """

    tasks: tuple[str, ...] = TASKS
    blocks: int = 4
    filters: int = 32
    input_hw: tuple[int, int] = (96, 128)
    n_way: int = 5
    depth_filters: int = 4
    normals_filters: int = 8
    label_filters: int = 4
    attention_layers: int = 2
    attention_dim: int = 64
    attention_heads: int = 4
    attention_init_bias: float = -6.0
    probabilistic: bool = False
    use_attention: bool = True
    medusa_masks: bool = False
    multiscale_heads: tuple[str, ...] = ()
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.input_hw = tuple(int(v) for v in self.input_hw)  # type: ignore[assignment]
        self.multiscale_heads = tuple(self.multiscale_heads)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.class_names = tuple(str(v) for v in self.class_names)
        self.validate()

    @property
    def multiplier_size(self) -> int:
        """Length B·C of the multiplier vector."""
        return self.blocks * self.filters

    def feature_hw(self) -> tuple[int, int]:
        """Spatial size of the last block's output (each block halves with floor)."""
        h, w = self.input_hw
        for _ in range(self.blocks):
            h, w = h // 2, w // 2
        return h, w

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if not self.tasks:
            raise ValueError("tasks: at least one task is required")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks: unknown task(s) {unknown}; expected a subset of {list(TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: duplicates in {list(self.tasks)}")
        for name in ("blocks", "filters", "n_way", "depth_filters", "normals_filters", "label_filters",
                     "attention_layers", "attention_dim", "attention_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.attention_dim % self.attention_heads:
            raise ValueError("attention_dim: must be divisible by attention_heads")
        if len(self.input_hw) != 2 or min(self.input_hw) < 2 ** self.blocks:
            raise ValueError(f"input_hw: need two sizes >= {2 ** self.blocks} for {self.blocks} blocks, "
                             f"got {self.input_hw}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean/std: need three values each, std > 0")
        bad = [t for t in self.multiscale_heads if t not in self.tasks]
        if bad:
            raise ValueError(f"multiscale_heads: {bad} are not among tasks {list(self.tasks)}")
        if self.class_names and len(self.class_names) != self.n_way:
            raise ValueError(f"class_names: {len(self.class_names)} names for n_way={self.n_way}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples) for YAML/JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, refusing unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config: unknown key(s) {unknown}")
        return cls(**data)
