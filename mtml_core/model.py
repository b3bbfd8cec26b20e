"""The multi-task model (paper §4.2, DESIGN.md "Model"): backbone f_Φ with runtime channel multipliers,
task heads g_θ^j, label encoders, and one attention module h_j per task.

Depth choice: the depth decoder predicts log-depth and returns ``exp(log_depth)`` metres (always positive; the
loss works in log space so near and far errors weigh alike). Normals are L2-normalised; VP rows are unit vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtml_core.attention import AttentionModule
from mtml_core.config import DENSE_TASKS, ModelConfig
from mtml_core.losses import check_labels
from mtml_core.medusa import SharedFeatureMask, fuse_scales

LABEL_ENCODING_SIZE = 4 * 4  # label encoder output grid (4×4) per filter


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """conv3x3 → BatchNorm → ReLU → maxpool2."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


class Backbone(nn.Module):
    """f_Φ(I, m): B conv blocks; block b's output is multiplied channel-wise by m[b·C:(b+1)·C]."""

    def __init__(self, blocks: int = 4, filters: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        self.filters = filters
        self.blocks = nn.ModuleList(conv_block(in_channels if b == 0 else filters, filters) for b in range(blocks))

    def forward(self, images: torch.Tensor, multipliers: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per-block outputs after modulation. ``multipliers``: None, (B·C,) or (N, B·C)."""
        n_blocks, c = len(self.blocks), self.filters
        m = None
        if multipliers is not None:
            if multipliers.shape[-1] != n_blocks * c or multipliers.dim() > 2:
                raise ValueError(f"multipliers: expected shape ({n_blocks * c},) or (N, {n_blocks * c}), "
                                 f"got {tuple(multipliers.shape)}")
            m = multipliers.reshape(-1, n_blocks, c, 1, 1)
        feats, h = [], images
        for b, block in enumerate(self.blocks):
            h = block(h)
            if m is not None:
                h = h * m[:, b]
            feats.append(h)
        return feats


class DenseDecoder(nn.Module):
    """Conv-transpose decoder: 4 × (conv-T stride 2 → ReLU → conv3x3 → ReLU), 1×1 conv, resize to ``out_hw``."""

    def __init__(self, in_channels: int, filters: int, out_channels: int, out_hw: tuple[int, int],
                 blocks: int = 4) -> None:
        super().__init__()
        self.out_hw = tuple(out_hw)
        layers: list[nn.Module] = []
        for b in range(blocks):
            layers += [nn.ConvTranspose2d(in_channels if b == 0 else filters, filters, 4, stride=2, padding=1),
                       nn.ReLU(), nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(filters, out_channels, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output before the task's output transform, at ``out_hw``."""
        y = self.out(self.body(x))
        if tuple(y.shape[-2:]) != self.out_hw:
            y = F.interpolate(y, size=self.out_hw, mode="bilinear", align_corners=False)
        return y


class DepthHead(DenseDecoder):
    """Depth in metres: exp of a predicted log-depth (starting near 4 m)."""

    def __init__(self, in_channels: int, filters: int, out_hw: tuple[int, int]) -> None:
        super().__init__(in_channels, filters, 1, out_hw)
        nn.init.constant_(self.out.bias, 1.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) → (N, 1, H, W) metres."""
        return self.raw(x).clamp(-6.0, 6.0).exp()


class NormalsHead(DenseDecoder):
    """Unit surface normals in the camera frame."""

    def __init__(self, in_channels: int, filters: int, out_hw: tuple[int, int]) -> None:
        super().__init__(in_channels, filters, 3, out_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) → (N, 3, H, W) unit vectors."""
        y = self.raw(x)  # = F.normalize(y, dim=1, eps=1e-6), which is ~60x slower on CPU over 3 NCHW channels
        return y / y.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12).sqrt()


class ClassHead(nn.Module):
    """Fully connected N-way classifier on the flattened features."""

    def __init__(self, in_features: int, n_way: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) → logits (N, n_way)."""
        return self.fc(x.flatten(1))


class VPHead(nn.Module):
    """Fully connected head for the three Manhattan directions (vertical first), as unit rows."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, 9)
        with torch.no_grad():  # start at the upright, forward-looking camera's directions
            self.fc.weight.mul_(0.1)
            self.fc.bias.copy_(torch.tensor([0.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) → (N, 3, 3) unit directions."""
        return F.normalize(self.fc(x.flatten(1)).view(-1, 3, 3), dim=-1, eps=1e-6)


class LabelEncoder(nn.Module):
    """3 conv blocks (4 filters) compressing a pixel label to a fixed-size vector for the attention tokens."""

    def __init__(self, in_channels: int, filters: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for b in range(3):
            layers += [nn.Conv2d(in_channels if b == 0 else filters, filters, 3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.out_features = filters * LABEL_ENCODING_SIZE

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """(N, k, H, W) → (N, filters·16)."""
        return self.body(y)


def dense_label_input(task: str, y: torch.Tensor) -> torch.Tensor:
    """Pixel label → encoder input: finite values (log-depth for depth) plus a validity channel."""
    valid = torch.isfinite(y).all(dim=1, keepdim=True)
    if task == "depth":
        valid = valid & (y > 0)
        y = torch.log(torch.where(valid, y, torch.ones_like(y)))
    y = torch.where(valid, y, torch.zeros_like(y))
    return torch.cat([y, valid.to(y.dtype)], dim=1)


class MultiTaskModel(nn.Module):
    """Shared backbone, one head per task, one attention module (and label encoder) per task."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, (fh, fw) = cfg.filters, cfg.feature_hw()
        self.backbone = Backbone(cfg.blocks, c)
        self.heads = nn.ModuleDict()
        for task in cfg.tasks:
            cin = c * cfg.blocks if task in cfg.multiscale_heads else c
            if task == "class":
                self.heads[task] = ClassHead(cin * fh * fw, cfg.n_way)
            elif task == "vp":
                self.heads[task] = VPHead(cin * fh * fw)
            elif task == "depth":
                self.heads[task] = DepthHead(cin, cfg.depth_filters, cfg.input_hw)
            else:
                self.heads[task] = NormalsHead(cin, cfg.normals_filters, cfg.input_hw)
        self.label_encoders = nn.ModuleDict(
            {t: LabelEncoder(2 if t == "depth" else 4, cfg.label_filters) for t in cfg.tasks if t in DENSE_TASKS})
        self.attention = nn.ModuleDict()
        if cfg.use_attention:
            for task in cfg.tasks:
                token_dim = self.embedding_size + self.label_size(task)
                self.attention[task] = AttentionModule(
                    token_dim, cfg.multiplier_size, cfg.attention_dim, cfg.attention_layers, cfg.attention_heads,
                    cfg.attention_init_bias, cfg.probabilistic)
        self.masks = nn.ModuleDict(
            {t: SharedFeatureMask(cfg.multiplier_size) for t in cfg.tasks} if cfg.medusa_masks else {})

    @property
    def embedding_size(self) -> int:
        """Size of x, the flattened last-block output."""
        fh, fw = self.cfg.feature_hw()
        return self.cfg.filters * fh * fw

    def label_size(self, task: str) -> int:
        """Size of enc(y) in an attention token."""
        if task == "class":
            return self.cfg.n_way
        if task == "vp":
            return 9
        return self.cfg.label_filters * LABEL_ENCODING_SIZE

    def check_images(self, images: torch.Tensor) -> None:
        """Raise ValueError unless images are (N, 3, H, W) floats at the configured size."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (N, 3, H, W), got {tuple(images.shape)} "
                             f"({images.shape[1] if images.dim() == 4 else '?'} channels)")
        if tuple(images.shape[-2:]) != self.cfg.input_hw:
            raise ValueError(f"images: size {tuple(images.shape[-2:])} != model input_hw {self.cfg.input_hw}")
        if not images.is_floating_point():
            raise ValueError(f"images: expected a float tensor, got {images.dtype}")

    def features(self, images: torch.Tensor, multipliers: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Backbone per-block outputs f_Φ(I, m)."""
        self.check_images(images)
        return self.backbone(images, multipliers)

    def head_input(self, task: str, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """What head g^task reads: the last block, or all blocks fused for a multi-scale head."""
        return fuse_scales(list(feats)) if task in self.cfg.multiscale_heads else feats[-1]

    def embed(self, images: torch.Tensor, multipliers: torch.Tensor | None = None) -> torch.Tensor:
        """x: flattened last-block output (N, D)."""
        return self.features(images, multipliers)[-1].flatten(1)

    def encode_label(self, task: str, y: torch.Tensor) -> torch.Tensor:
        """enc(y) for attention tokens: one-hot class, flattened VP directions, or the dense label encoder."""
        check_labels(task, y, self.cfg.n_way)
        if task == "class":
            return F.one_hot(y.long(), self.cfg.n_way).to(torch.float32)
        if task == "vp":
            return y.flatten(1)
        if tuple(y.shape[-2:]) != self.cfg.input_hw:
            raise ValueError(f"{task} labels: size {tuple(y.shape[-2:])} != model input_hw {self.cfg.input_hw}")
        return self.label_encoders[task](dense_label_input(task, y))

    def attention_tokens(self, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Support tokens [x_i ; enc(y_i)]: x (N, D) unmodulated embeddings, y labels (N, ...)."""
        if x.shape[0] == 0:
            raise ValueError(f"{task}: empty support set")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{task}: {x.shape[0]} embeddings but {y.shape[0]} labels")
        return torch.cat([x, self.encode_label(task, y)], dim=-1)

    def attention_weights(self, task: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """w for a support set (AM), or the prior mean's w (P-AM at test time). Shape (B·C,)."""
        if task not in self.attention:
            raise ValueError(f"{task}: this model has no attention module (use_attention={self.cfg.use_attention})")
        out = self.attention[task](self.attention_tokens(task, x, y))
        return torch.sigmoid(out[0]) if isinstance(out, tuple) else out

    def task_multiplier(self, task: str, w: torch.Tensor | None = None) -> torch.Tensor | None:
        """Full runtime multiplier for a task: (1 - w) times its Medusa mask, or None for the identity."""
        m = None if w is None else 1.0 - w
        if task in self.masks:
            mask = self.masks[task]()
            m = mask if m is None else m * mask
        return m

    def prior_multiplier(self, task: str) -> torch.Tensor | None:
        """Multiplier served before adapting to an environment: (1 - w̄), w̄ the attention prior (None: identity)."""
        w = self.attention[task].prior if task in self.attention else None
        return self.task_multiplier(task, w if w is not None and bool(w.any()) else None)

    def forward(self, images: torch.Tensor, multipliers: Mapping[str, torch.Tensor | None] | None = None,
                tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """All (or the given) tasks' outputs.

        ``multipliers[task]`` is that task's attention multiplier 1 - w (None = identity); a task's Medusa mask is
        applied on top here. Runtimes that call the backbone directly use :meth:`task_multiplier` instead.
        """
        tasks = list(self.cfg.tasks if tasks is None else tasks)
        unknown = [t for t in tasks if t not in self.heads]
        if unknown:
            raise ValueError(f"tasks: {unknown} not in this model's tasks {list(self.cfg.tasks)}")
        multipliers = multipliers or {}
        out, cache = {}, {}
        for task in tasks:
            m = multipliers.get(task)
            if task in self.masks:
                m = self.masks[task]() if m is None else m * self.masks[task]()
            key = None if m is None else id(m)
            if key not in cache:
                cache[key] = self.features(images, m)
            out[task] = self.heads[task](self.head_input(task, cache[key]))
        return out
