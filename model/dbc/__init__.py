"""DBC: diffusion model-augmented behavioural cloning (arXiv 2302.13335; docs/design.md §5, docs/dbc.md).

Imitation learning from expert demonstrations, apart from the world model and the dream agent;
the torch modules and their maths only (no environments, no training loop: training/dbc/).

- `core.py` — the joint diffusion model phi over [s, a] (`JointDiffusion`), the DBC losses
  (`dbc_loss_continuous`, `dbc_loss_discrete`), the BC / DBC policy nets (`MLPPolicy`, `ConvPolicy`),
  `act`, and their checkpoints (kinds 'dbc_policy', 'dbc_diffusion').
- `ensemble.py` — `EnsembleMLPPolicy`: several independent MLP policies trained as one batched net.
- `diffusion_policy.py` — the Diffusion Policy baseline (Chi et al.; checkpoint kind 'dbc_diffusion_policy').
"""
