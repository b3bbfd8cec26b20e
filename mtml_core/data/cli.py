"""`mtml-synth`: preview, build and list the built-in synthetic world."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from mtml_core.data.categories import SPLITS, categories
from mtml_core.data.preview import preview_grid, save_rgb
from mtml_core.data.shards import build_shards
from mtml_core.data.spec import builtin_envs, get_env
from mtml_core.data.synth import render_frame


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 96x128, got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"size must be at least 8x8, got {text!r}")
    return h, w


def _preview(args: argparse.Namespace) -> None:
    specs = [get_env(name) for name in args.env]
    frames, labels = [], []
    for spec in specs:
        frames += [render_frame(spec, args.seed + i, args.size) for i in range(args.frames)]
        labels += [f"{spec.name} #{args.seed + i}" for i in range(args.frames)]
    save_rgb(args.out, preview_grid(frames, labels))
    print(f"wrote {args.out}: {len(frames)} frames of {', '.join(args.env)} (RGB | depth | normals | VPs)")


def _build(args: argparse.Namespace) -> None:
    envs = builtin_envs(args.split) if args.env is None else [get_env(n) for n in args.env]
    t0 = time.perf_counter()
    manifest = build_shards(envs, args.frames, args.out, args.size, args.shard_size, args.seed, args.split)
    n = sum(s["count"] for s in manifest["shards"])
    print(f"wrote {n} frames of {len(envs)} environments in {len(manifest['shards'])} shards to {args.out} "
          f"({time.perf_counter() - t0:.1f} s)")


def _list(args: argparse.Namespace) -> None:
    print(f"{'environment':24s} {'split':6s} {'family':10s} style")
    for spec in builtin_envs():
        print(f"{spec.name:24s} {spec.split:6s} {spec.family:10s} {spec.style}")
    for split in SPLITS:
        names = categories(split)
        print(f"\n{split} categories ({len(names)}): {', '.join(names)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mtml-synth`."""
    parser = argparse.ArgumentParser(prog="mtml-synth", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preview", help="grid of RGB | depth | normals | VP overlay for a few frames")
    p.add_argument("--env", required=True, nargs="+", help="built-in environment names or spec files")
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(192, 256), help="HxW")
    p.set_defaults(func=_preview)
    b = sub.add_parser("build", help="render a cached, sharded dataset (.npz shards + manifest.json)")
    b.add_argument("--split", choices=SPLITS, default="train")
    b.add_argument("--env", nargs="*", default=None, help="environments (default: all of --split)")
    b.add_argument("--frames", type=int, required=True, help="frames per environment")
    b.add_argument("--out", required=True)
    b.add_argument("--size", type=_size, default=(96, 128), help="HxW")
    b.add_argument("--shard-size", type=int, default=256)
    b.add_argument("--seed", type=int, default=0, help="first frame seed")
    b.set_defaults(func=_build)
    sub.add_parser("list", help="environments and scene categories").set_defaults(func=_list)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"mtml-synth: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
