"""The world model: DIAMOND's diffusion next-frame model and its reward/end model (docs/design.md §2).

The torch modules and their maths only (no data, no training loop: training/world_model/ and
training/train.py). The names callers use most are re-exported here, so
`from model.world_model import WorldModel, Dreams, preset_config` reads the same wherever it is.

- `core.py` — `WorldModel` (presets, `from_snapshot`, one batched `dream_step`), `Dreams` (the
  state of a batch of dreams), `DreamNoise`, and the frame / action-context helpers; checkpoint kind
  'world_model'.
- `unet.py` — the action-conditioned U-Net F with adaptive group norm (`grow_context`).
- `denoiser.py` — EDM preconditioning and the denoising loss around the U-Net.
- `sampler.py` — the Karras schedule, Euler / Heun steps, action-contrast guidance (`SamplerConfig`).
- `reward_end.py` — the reward / end model (frame_t, frame_t+1, action_t) -> reward sign, end.
- `env.py` — the world model as a gymnasium environment (`WorldModelEnv`, `WorldModelVectorEnv`).
- `onnx_backend.py` — ONNX Runtime backends of the U-Net for serving on a CPU (`use_backend`).
"""

from model.world_model.core import (
    PRESETS,
    DreamNoise,
    Dreams,
    DreamStep,
    Hidden,
    WorldModel,
    WorldModelConfig,
    frames_to_tensor,
    open_action_slot,
    preset_config,
    slide,
    tensor_to_frames,
    transfer_to_game,
    with_action,
)

__all__ = [
    "PRESETS",
    "DreamNoise",
    "DreamStep",
    "Dreams",
    "Hidden",
    "WorldModel",
    "WorldModelConfig",
    "frames_to_tensor",
    "open_action_slot",
    "preset_config",
    "slide",
    "tensor_to_frames",
    "transfer_to_game",
    "with_action",
]
