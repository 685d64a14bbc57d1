"""Training on on-the-fly batches: a Lightning gaze regressor, a data module and a LightningCLI entry.

``python -m onthefly.train fit --config configs/demo.yaml`` (or ``onthefly train fit --config ...``); see ``docs/training.md``.
"""
