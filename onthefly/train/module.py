"""``GazeRegressor``: the ETH-XGaze baseline recipe as a LightningModule.

backbone (``onthefly.train.models.build_model``) → (pitch, yaw) radians, L1 loss, Adam (lr 1e-4 as the baseline), StepLR;
logs ``train/loss``, ``train/angular_error`` and ``val/angular_error`` / ``test/angular_error`` (mean, degrees,
``onthefly.geometry.angular_error``).
"""
from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from onthefly.geometry import angular_error

from .models import build_model


class _WarmEMA:
    """EMA update ``avg ← d·avg + (1-d)·x`` with ``d = min(decay, (1+n)/(10+n))`` after n updates, so the average
    does not drag the random initial weights through the first thousand steps. ``step(n)`` sets d once per
    optimizer step from a Python count (no host read of the device counter per step)."""

    def __init__(self, decay: float):
        self.decay, self.d = float(decay), 0.0

    def step(self, n: int) -> None:
        self.d = min(self.decay, (1.0 + n) / (10.0 + n))

    def __call__(self, avg: torch.Tensor, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return avg + (x - avg) * (1.0 - self.d)


class GazeRegressor(L.LightningModule):
    """Gaze regressor: images (B,3,H,W) → (pitch, yaw) in radians.

    Args:
        model: backbone name (``small``, ``resnet18``, ``resnet50``, ``timm:<arch>``, ``torchvision:<arch>``).
        model_args: keyword arguments of the backbone (e.g. ``{"width": 32}`` for ``small``).
        lr, weight_decay: Adam.
        scheduler: ``step`` (StepLR(step_size, gamma), the baseline: 10 epochs, 0.1), ``cosine`` (to
            ``max_steps`` of the trainer, stepped per batch) or ``none``.
        step_size, gamma: StepLR.
        warmup_steps: linear learning-rate warm-up (per batch) before the schedule.
        pretrained: external backbones only.
        ema_decay: keep an exponential moving average of the weights and BatchNorm statistics
            (``torch.optim.swa_utils.AveragedModel``, decay warmed up as ``min(decay, (1+n)/(10+n))``), updated after
            every optimizer step, and evaluate / predict with it; 0 (default) disables it. Short, noisy runs at a high learning rate gain most.
        channels_last: keep the network and its inputs in channels-last memory format (faster convolutions on
            CPUs with oneDNN and on GPUs with tensor cores, above all with ``precision: bf16-mixed``).
        tta_mirror: at evaluation and prediction, average the prediction of each image with the yaw-negated
            prediction of its mirror image (exact for gaze: mirroring negates yaw).
    """

    def __init__(self, model: str = "small", model_args: dict | None = None, lr: float = 1e-4,
                 weight_decay: float = 0.0, scheduler: str = "step", step_size: int = 10, gamma: float = 0.1,
                 warmup_steps: int = 0, pretrained: bool = False, ema_decay: float = 0.0,
                 tta_mirror: bool = False, channels_last: bool = False):
        super().__init__()
        if scheduler not in ("step", "cosine", "none"):
            raise ValueError(f"scheduler: expected 'step', 'cosine' or 'none', got {scheduler!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected 0 <= decay < 1, got {ema_decay}")
        self.save_hyperparameters()
        self.net: nn.Module = build_model(model, pretrained=pretrained, **(model_args or {}))
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema: nn.Module | None = None
        if ema_decay > 0:
            self._ema_fn = _WarmEMA(ema_decay)
            self._ema_updates: int | None = None  # read from the average's counter once (also after a resume)
            self.ema = AveragedModel(self.net, avg_fn=self._ema_fn, use_buffers=True)
            self.ema.requires_grad_(False)  # not trained: outside the optimizer and DDP's gradient reduction

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Training mode: the trained network. Eval mode: the EMA network when kept, with mirror averaging when
        ``tta_mirror``."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.training:
            return self.net(images)
        net = self.ema if self.ema is not None else self.net
        pred = net(images)
        if self.hparams.tta_mirror:
            sign = torch.tensor([1.0, -1.0], device=pred.device, dtype=pred.dtype)
            pred = 0.5 * (pred + net(images.flip(-1)) * sign)
        return pred

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            if self._ema_updates is None:
                self._ema_updates = int(self.ema.n_averaged)
            self._ema_fn.step(self._ema_updates)
            self.ema.update_parameters(self.net)
            self._ema_updates += 1

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        pred = self(batch["image"]).float()  # float32 loss and labels also under bf16 autocast
        gaze = batch["gaze"].float()
        loss = nn.functional.l1_loss(pred, gaze)
        err = angular_error(pred.detach().float(), gaze.float()).mean()
        n = gaze.shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, batch_size=n, sync_dist=not on_step,
                 prog_bar=on_step)
        self.log(f"{stage}/angular_error", err, on_step=on_step, on_epoch=True, batch_size=n,
                 sync_dist=not on_step, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, "test")

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        return self(batch["image"])

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none" and not hp.warmup_steps:
            return opt
        if hp.scheduler == "step":
            main = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
            sched = {"scheduler": main, "interval": "epoch"}
            if hp.warmup_steps:  # warm-up per step on top of the epoch schedule via a lambda on the base lr
                raise ValueError("warmup_steps: use scheduler='cosine' (warm-up is per step)")
            return {"optimizer": opt, "lr_scheduler": sched}
        total = max(1, int(getattr(self.trainer, "max_steps", -1) or -1))
        if total <= 1:
            total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = int(hp.warmup_steps)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if hp.scheduler == "none":
                return 1.0
            t = min(1.0, (step - warm) / max(1, total - warm))
            return 0.5 * (1 + math.cos(math.pi * t)) * (1 - 0.01) + 0.01

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
