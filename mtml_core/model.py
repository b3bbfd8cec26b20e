"""The multi-task model (paper §4.2): backbone f_Φ with runtime channel multipliers,
task heads g_θ^j, label encoders, and one attention module h_j per task.

Two presets (``ModelConfig.arch``): ``paper`` is the paper's Conv-4 with its heads (FC class and VP heads,
conv-transpose decoders on the last block). ``unet`` is the product model: double-conv GroupNorm blocks (the first
at stride 2), every block modulated by the task's multiplier; U-Net dense heads that read every block through skip
connections, upsample bilinearly and output at the input size (Medusa's multi-scale head); a Manhattan-frame VP
head; a cosine classifier over named categories. Heads of the ``unet`` preset read one packed tensor, every
block's features flattened and concatenated (:func:`pack_features`), so every head input stays one tensor.

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
from mtml_core.data.geometry import canonical_vps
from mtml_core.losses import check_labels
from mtml_core.medusa import SharedFeatureMask, fuse_scales

LABEL_ENCODING_SIZE = 4 * 4  # label encoder output grid (4×4) per filter


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Paper block: conv3x3 → BatchNorm → ReLU → maxpool2."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


def unet_block(cin: int, cout: int, first: bool) -> nn.Sequential:
    """Product block: (stride-2 conv for the first block, else maxpool2) conv3x3 → GN → ReLU → conv3x3 → GN → ReLU.

    GroupNorm normalises each image on its own, so train and test see the same statistics whatever the multipliers
    of the previous block did (BatchNorm's running statistics would come from differently modulated features)."""
    layers: list[nn.Module] = [] if first else [nn.MaxPool2d(2)]
    layers += [nn.Conv2d(cin, cout, 3, stride=2 if first else 1, padding=1, bias=False), nn.GroupNorm(cout // 8, cout),
               nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(cout // 8, cout), nn.ReLU()]
    return nn.Sequential(*layers)


def last_norm(block: nn.Sequential) -> nn.Module:
    """The block's last normalisation layer: a non-negative multiplier folds into its affine scale and shift."""
    norms = [m for m in block if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    if not norms or norms[-1].weight is None:
        raise ValueError("block has no affine normalisation layer")
    return norms[-1]


class Backbone(nn.Module):
    """f_Φ(I, m): blocks of ``widths`` channels; block b's output is multiplied channel-wise by its slice of m."""

    def __init__(self, blocks: int = 4, filters: int = 32, in_channels: int = 3, arch: str = "paper",
                 widths: Sequence[int] = ()) -> None:
        super().__init__()
        self.widths = tuple(widths) or (filters,) * blocks
        self.arch = arch
        cins = (in_channels, *self.widths[:-1])
        self.blocks = nn.ModuleList(
            conv_block(ci, co) if arch == "paper" else unet_block(ci, co, b == 0)
            for b, (ci, co) in enumerate(zip(cins, self.widths)))

    @property
    def multiplier_size(self) -> int:
        """Length of the multiplier vector (sum of the block widths)."""
        return sum(self.widths)

    def split_multipliers(self, multipliers: torch.Tensor) -> list[torch.Tensor]:
        """(M,) or (N, M) multipliers → one (N or 1, C_b, 1, 1) scale per block."""
        if multipliers.shape[-1] != self.multiplier_size or multipliers.dim() > 2:
            raise ValueError(f"multipliers: expected shape ({self.multiplier_size},) or (N, {self.multiplier_size}), "
                             f"got {tuple(multipliers.shape)}")
        m = multipliers.reshape(-1, self.multiplier_size)
        return [part[:, :, None, None] for part in m.split(self.widths, dim=1)]

    def forward(self, images: torch.Tensor, multipliers: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per-block outputs after modulation. ``multipliers``: None, (M,) or (N, M)."""
        m = None if multipliers is None else self.split_multipliers(multipliers)
        feats, h = [], images
        for b, block in enumerate(self.blocks):
            h = block(h)
            if m is not None:
                h = h * m[b]
            feats.append(h)
        return feats


def compose_multiplier(w: torch.Tensor | None, mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """The one composition of a task's runtime multiplier: m = (1 − w) ⊙ mask (§4.2's modulation o ⊙ (1 − w), times
    the task's Medusa mask, :class:`mtml_core.medusa.SharedFeatureMask`); either part may be absent, None is the
    identity. Backbones, backends and folding take the result as it is."""
    m = None if w is None else 1.0 - w
    if mask is not None:
        m = mask if m is None else m * mask
    return m


def token_features(feats: Sequence[torch.Tensor], arch: str) -> torch.Tensor:
    """x of an attention token, (N, D), from per-block features: the flattened last block (``paper``), or every
    block's per-channel mean and standard deviation (``unet``: multi-scale support statistics)."""
    if arch != "unet":
        return feats[-1].flatten(1)
    return torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in feats], 1)


def pack_features(feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every block's features flattened and concatenated: (N, Σ C_b·h_b·w_b), the ``unet`` heads' one input."""
    return torch.cat([f.flatten(1) for f in feats], dim=1)


class PackedInput(nn.Module):
    """Unpacks :func:`pack_features` into per-block (N, C_b, h_b, w_b) maps."""

    def __init__(self, widths: Sequence[int], block_hw: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.shapes = [(c, h, w) for c, (h, w) in zip(widths, block_hw)]

    def unpack(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, D) → per-block maps."""
        parts = x.split([c * h * w for c, h, w in self.shapes], dim=1)
        return [p.reshape(-1, c, h, w) for p, (c, h, w) in zip(parts, self.shapes)]


def conv_gn_relu(cin: int, cout: int) -> list[nn.Module]:
    """conv3x3 → GroupNorm → ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(max(1, cout // 8), cout), nn.ReLU()]


class UNetDecoder(PackedInput):
    """Multi-scale dense head (Medusa-style, U-Net skips): from the deepest block up, bilinear ×2, concatenation with
    the next shallower block, two conv3x3-GN-ReLU; a 1×1 conv at the first block's resolution, then bilinear to the
    input size (no conv-transpose, so no checkerboard)."""

    def __init__(self, widths: Sequence[int], block_hw: Sequence[tuple[int, int]], filters: Sequence[int],
                 out_channels: int, out_hw: tuple[int, int]) -> None:
        super().__init__(widths, block_hw)
        self.out_hw = tuple(out_hw)
        stages, cin = [], widths[-1]
        for skip, f in zip(reversed(widths[:-1]), filters):
            stages.append(nn.Sequential(*conv_gn_relu(cin + skip, f), *conv_gn_relu(f, f)))
            cin = f
        self.stages = nn.ModuleList(stages)
        self.out = nn.Conv2d(cin, out_channels, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder output before the task's output transform, at ``out_hw``."""
        feats = self.unpack(x)
        h = feats[-1]
        for stage, skip in zip(self.stages, reversed(feats[:-1])):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = stage(torch.cat([h, skip], dim=1))
        return F.interpolate(self.out(h), size=self.out_hw, mode="bilinear", align_corners=False)


def depth_from_log(y: torch.Tensor) -> torch.Tensor:
    """Metres from a predicted log-depth (clamped to e^±6)."""
    return y.clamp(-6.0, 6.0).exp()


def unit_normals(y: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) → unit vectors along dim 1 (F.normalize is ~60x slower on CPU over 3 NCHW channels)."""
    return y / y.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12).sqrt()


class UNetDepthHead(UNetDecoder):
    """Depth in metres at the input size: exp of a predicted log-depth (starting near 4 m)."""

    def __init__(self, widths: Sequence[int], block_hw: Sequence[tuple[int, int]], filters: Sequence[int],
                 out_hw: tuple[int, int]) -> None:
        super().__init__(widths, block_hw, filters, 1, out_hw)
        nn.init.constant_(self.out.bias, 1.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed features → (N, 1, H, W) metres."""
        return depth_from_log(self.raw(x))


class UNetNormalsHead(UNetDecoder):
    """Unit surface normals in the camera frame, at the input size."""

    def __init__(self, widths: Sequence[int], block_hw: Sequence[tuple[int, int]], filters: Sequence[int],
                 out_hw: tuple[int, int]) -> None:
        super().__init__(widths, block_hw, filters, 3, out_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed features → (N, 3, H, W) unit vectors."""
        return unit_normals(self.raw(x))


def frame_from_6d(v: torch.Tensor) -> torch.Tensor:
    """(N, 6) → (N, 3, 3) orthonormal rows [vertical, h1, h2] by Gram–Schmidt (the continuous 6-D rotation form)."""
    a, b = v[:, :3], v[:, 3:]
    up = F.normalize(a, dim=-1, eps=1e-6)
    h1 = F.normalize(b - (b * up).sum(-1, keepdim=True) * up, dim=-1, eps=1e-6)
    return torch.stack([up, h1, torch.linalg.cross(up, h1)], dim=1)


class FrameVPHead(PackedInput):
    """Vanishing directions as a Manhattan frame: the two deepest blocks (the shallower average-pooled to the
    deepest's size) → 1×1 conv → MLP → 6-D rotation → orthonormal rows, in the canonical form of
    :func:`mtml_core.data.geometry.canonical_vps` (its loss is invariant to signs and to the horizontals' order)."""

    def __init__(self, widths: Sequence[int], block_hw: Sequence[tuple[int, int]], hidden: int = 256) -> None:
        super().__init__(widths, block_hw)
        h, w = block_hw[-1]
        self.reduce = nn.Sequential(nn.Conv2d(widths[-1] + widths[-2], 32, 1), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(32 * h * w, hidden), nn.ReLU(), nn.Linear(hidden, 6))
        with torch.no_grad():  # start at the upright, forward-looking camera: up = -y, h1 = +z
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.copy_(torch.tensor([0.0, -1.0, 0.0, 0.0, 0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed features → (N, 3, 3) canonical unit directions (vertical first)."""
        feats = self.unpack(x)
        deep = torch.cat([F.adaptive_avg_pool2d(feats[-2], feats[-1].shape[-2:]), feats[-1]], dim=1)
        return canonical_vps(frame_from_6d(self.mlp(self.reduce(deep).flatten(1))))


class CosineClassHead(PackedInput):
    """Scene class over named categories: the cosine of an embedding of every block's pooled features with one
    prototype row per category, times a learned scale. Rows past the trained names take new categories at run time
    (a prototype set from labelled frames, see :meth:`embed`)."""

    def __init__(self, widths: Sequence[int], block_hw: Sequence[tuple[int, int]], rows: int, dim: int = 128) -> None:
        super().__init__(widths, block_hw)
        self.mlp = nn.Sequential(nn.Linear(2 * sum(widths), dim), nn.ReLU(), nn.Linear(dim, dim))
        self.prototypes = nn.Parameter(torch.randn(rows, dim) * 0.1)
        self.log_scale = nn.Parameter(torch.tensor(2.3))  # scale ≈ 10

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Packed features → unit embeddings (N, dim)."""
        pooled = [torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1) for f in self.unpack(x)]
        return F.normalize(self.mlp(torch.cat(pooled, 1)), dim=-1, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Packed features → logits (N, rows)."""
        return self.log_scale.exp() * self.embed(x) @ F.normalize(self.prototypes, dim=-1, eps=1e-6).T


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
        return depth_from_log(self.raw(x))


class NormalsHead(DenseDecoder):
    """Unit surface normals in the camera frame."""

    def __init__(self, in_channels: int, filters: int, out_hw: tuple[int, int]) -> None:
        super().__init__(in_channels, filters, 3, out_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) → (N, 3, H, W) unit vectors."""
        return unit_normals(self.raw(x))


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
        self.backbone = Backbone(cfg.blocks, cfg.filters, arch=cfg.arch, widths=cfg.block_widths)
        self.heads = nn.ModuleDict({task: self._head(task) for task in cfg.tasks})
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

    def _head(self, task: str) -> nn.Module:
        """g^task of the configured preset."""
        cfg = self.cfg
        if cfg.arch == "unet":
            widths, hw = cfg.block_widths, cfg.block_hw()
            return {"class": lambda: CosineClassHead(widths, hw, cfg.n_way),
                    "vp": lambda: FrameVPHead(widths, hw),
                    "depth": lambda: UNetDepthHead(widths, hw, cfg.decoder_filters, cfg.input_hw),
                    "normals": lambda: UNetNormalsHead(widths, hw, cfg.decoder_filters, cfg.input_hw)}[task]()
        c, (fh, fw) = cfg.filters, cfg.feature_hw()
        cin = c * cfg.blocks if task in cfg.multiscale_heads else c
        if task == "class":
            return ClassHead(cin * fh * fw, cfg.n_way)
        if task == "vp":
            return VPHead(cin * fh * fw)
        if task == "depth":
            return DepthHead(cin, cfg.depth_filters, cfg.input_hw)
        return NormalsHead(cin, cfg.normals_filters, cfg.input_hw)

    @property
    def embedding_size(self) -> int:
        """Size of x (:meth:`token_features`): the flattened last block, or (``unet``) every block's channel mean
        and standard deviation."""
        if self.cfg.arch == "unet":
            return 2 * self.cfg.multiplier_size
        fh, fw = self.cfg.feature_hw()
        return self.cfg.filters * fh * fw

    def label_size(self, task: str) -> int:
        """Size of enc(y) in an attention token."""
        if task == "class":
            return self.cfg.n_way
        if task == "vp":
            return 9
        return self.cfg.label_filters * LABEL_ENCODING_SIZE

    def token_features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """x of an attention token (N, D) from per-block features (see :func:`token_features`)."""
        return token_features(feats, self.cfg.arch)

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
        """What head g^task reads: every block packed (``unet``), the last block, or all blocks fused for a
        multi-scale head."""
        if self.cfg.arch == "unet":
            return pack_features(feats)
        return fuse_scales(list(feats)) if task in self.cfg.multiscale_heads else feats[-1]

    def embed(self, images: torch.Tensor, multipliers: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, D) of the images: :meth:`token_features` of their backbone features."""
        return self.token_features(self.features(images, multipliers))

    def encode_label(self, task: str, y: torch.Tensor) -> torch.Tensor:
        """enc(y) for attention tokens: one-hot class, flattened VP directions, or the dense label encoder."""
        check_labels(task, y, self.cfg.n_way)
        if task == "class":
            return F.one_hot(y.long(), self.cfg.n_way).to(torch.float32)
        if task == "vp":  # a direction the label does not give (NaN row, e.g. York Urban's horizontals) encodes as 0
            return torch.nan_to_num(y, nan=0.0).flatten(1)
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
        return self.attention[task](self.attention_tokens(task, x, y)).weights

    def task_multiplier(self, task: str, w: torch.Tensor | None = None, *,
                        detach_mask: bool = False) -> torch.Tensor | None:
        """The runtime multiplier of ``task`` for attention weights ``w`` (None: no attention), composed by
        :func:`compose_multiplier` with the task's Medusa mask; ``detach_mask`` keeps the mask out of autograd."""
        mask = self.masks[task]() if task in self.masks else None
        return compose_multiplier(w, mask.detach() if detach_mask and mask is not None else mask)

    def prior_multiplier(self, task: str) -> torch.Tensor | None:
        """Multiplier served before adapting to an environment: (1 - w̄), w̄ the attention prior (None: identity)."""
        w = self.attention[task].prior if task in self.attention else None
        return self.task_multiplier(task, w if w is not None and bool(w.any()) else None)

    def forward(self, images: torch.Tensor, multipliers: Mapping[str, torch.Tensor | None] | None = None,
                tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """All (or the given) tasks' outputs.

        ``multipliers[task]`` is that task's runtime multiplier (:meth:`task_multiplier`, :meth:`prior_multiplier`,
        or a vector a backend would take); missing or None: :meth:`task_multiplier` without attention.
        """
        tasks = list(self.cfg.tasks if tasks is None else tasks)
        unknown = [t for t in tasks if t not in self.heads]
        if unknown:
            raise ValueError(f"tasks: {unknown} not in this model's tasks {list(self.cfg.tasks)}")
        multipliers = multipliers or {}
        out, cache = {}, {}
        for task in tasks:
            m = multipliers.get(task)
            if m is None:
                m = self.task_multiplier(task)
            key = None if m is None else id(m)
            if key not in cache:
                cache[key] = self.features(images, m)
            out[task] = self.heads[task](self.head_input(task, cache[key]))
        return out
