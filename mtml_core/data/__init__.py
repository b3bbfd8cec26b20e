"""Data: the built-in synthetic world, real-dataset loaders and episode samplers.

- `sample.Frame`: the one sample type (synthetic world and every loader).
- `synth.render_frame(spec, seed, size)`: deterministic frames with exact depth / normals / VPs;
  `spec` (EnvSpec, YAML/JSON, validated) and the built-in `environments/*.yaml`; `categories`:
  scene categories (family x style) with disjoint splits; `scene` / `raycast` / `textures`: the
  renderer's parts; `geometry`: camera maths incl. `canonical_vps`.
- `loaders`: Omniglot, mini-ImageNet, Places folders, NYU v2, DIODE, KITTI, York Urban.
- `episodes`: class / domain episode samplers, `collate`, `episode_loader`.
- `shards` (cached datasets on disk), `preview`, `cli` (`mtml-synth`).
"""
