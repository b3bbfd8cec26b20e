"""Model configuration: everything needed to rebuild a model, with validation and a YAML/JSON-safe dict form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

TASKS = ("class", "depth", "normals", "vp")
DENSE_TASKS = ("depth", "normals")
TASK_ADAPTATION = ("class",)
DOMAIN_ADAPTATION = ("depth", "normals", "vp")
ARCHS = ("paper", "unet")


@dataclass
class ModelConfig:
    """Architecture hyper-parameters (paper §4.2 / §5 defaults).

    ``tasks``: subset of :data:`TASKS`. ``blocks``/``filters``: backbone B and C. ``input_hw``: network input size.
    ``n_way``: classification outputs. ``attention_layers``/``attention_dim``: L and d_model of each attention
    module. ``probabilistic``: P-AM instead of AM. ``use_attention``: False gives the ANIL multi-head baseline.
    ``medusa_masks``: learned per-task channel masks on every block (Medusa shared-feature attention).
    ``multiscale_heads``: tasks whose head reads all blocks' features (Medusa multi-scale head).
    ``arch``: ``paper`` (Conv-4, the paper's heads) or ``unet`` (the product preset: double-conv GroupNorm blocks
    of ``widths`` channels, the first at stride 2; U-Net dense heads reading every block; a Manhattan-frame VP
    head; a cosine class head over named categories, ``n_way`` rows of which the first ``len(class_names)`` are
    trained and the rest take new categories at run time). ``decoder_filters``: U-Net decoder widths, deep to
    shallow (one per skip level).
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
    arch: str = "paper"
    widths: tuple[int, ...] = ()
    decoder_filters: tuple[int, ...] = (64, 32, 16)

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.input_hw = tuple(int(v) for v in self.input_hw)  # type: ignore[assignment]
        self.multiscale_heads = tuple(self.multiscale_heads)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.class_names = tuple(str(v) for v in self.class_names)
        self.widths = tuple(int(v) for v in self.widths)
        self.decoder_filters = tuple(int(v) for v in self.decoder_filters)
        self.validate()

    @property
    def block_widths(self) -> tuple[int, ...]:
        """Channels of every backbone block (``widths``, or ``filters`` for each of ``blocks``)."""
        return self.widths or (self.filters,) * self.blocks

    @property
    def multiplier_size(self) -> int:
        """Length of the multiplier vector: the sum of the block widths (B·C for equal widths)."""
        return sum(self.block_widths)

    def block_hw(self) -> list[tuple[int, int]]:
        """Spatial size of every block's output (each block halves with floor)."""
        h, w = self.input_hw
        out = []
        for _ in range(self.blocks):
            h, w = h // 2, w // 2
            out.append((h, w))
        return out

    def feature_hw(self) -> tuple[int, int]:
        """Spatial size of the last block's output."""
        return self.block_hw()[-1]

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
        if self.arch not in ARCHS:
            raise ValueError(f"arch: {self.arch!r} is not one of {list(ARCHS)}")
        if self.widths and (len(self.widths) != self.blocks or min(self.widths) < 1):
            raise ValueError(f"widths: need {self.blocks} positive widths (one per block), got {list(self.widths)}")
        if self.arch == "unet":
            if len(self.decoder_filters) != self.blocks - 1 or min(self.decoder_filters, default=1) < 1:
                raise ValueError(f"decoder_filters: need {self.blocks - 1} positive widths for {self.blocks} "
                                 f"blocks, got {list(self.decoder_filters)}")
            if any(w % 8 for w in self.block_widths):
                raise ValueError(f"widths: unet blocks use GroupNorm in groups of 8 channels, got "
                                 f"{list(self.block_widths)}")
        named = len(self.class_names)
        if named and (named > self.n_way if self.arch == "unet" else named != self.n_way):
            raise ValueError(f"class_names: {named} names for n_way={self.n_way} class outputs")
        repeated = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
        if repeated:
            raise ValueError(f"class_names: every name once (one row each), repeated: {repeated}")

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
