"""Callbacks for on-the-fly training runs."""
from __future__ import annotations

import lightning as L
import torch


class AssertDisjointShards(L.Callback):
    """Records the (epoch, batch index, frame index) of every training sample this rank sees and, at the end of each
    training epoch, gathers them over ranks and asserts that the ranks saw disjoint batches and frames (within a
    pass over the frames). Add it to a DDP run: ``--trainer.callbacks+=onthefly.train.callbacks.AssertDisjointShards``.

    ``report``: after the check, ``{"ranks": W, "batches": [per rank], "samples": [per rank]}`` of the last epoch."""

    def __init__(self):
        self.seen: list[tuple[int, int]] = []
        self.frames: list[int] = []
        self.report: dict | None = None

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen, self.frames = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.current_epoch, int(batch["batch_index"][0])))
        self.frames.extend(int(i) for i in batch["frame_index"])

    def on_train_epoch_end(self, trainer, pl_module):
        world = trainer.world_size
        if world > 1:
            gathered: list = [None] * world
            torch.distributed.all_gather_object(gathered, (self.seen, self.frames))
        else:
            gathered = [(self.seen, self.frames)]
        batches = [set(s) for s, _ in gathered]
        for i in range(world):
            for j in range(i + 1, world):
                common = batches[i] & batches[j]
                if common:
                    raise AssertionError(f"ranks {i} and {j} both trained on batches {sorted(common)[:5]}")
        ds = trainer.datamodule._train.ds if trainer.datamodule is not None else None
        total = sum(len(f) for _, f in gathered)
        if ds is not None and total <= ds.n_frames:  # within one pass over the frames, frames are disjoint too
            frames = [set(f) for _, f in gathered]
            for i in range(world):
                for j in range(i + 1, world):
                    if frames[i] & frames[j]:
                        raise AssertionError(f"ranks {i} and {j} share frames {sorted(frames[i] & frames[j])[:5]}")
        self.report = {"ranks": world, "batches": [len(b) for b in batches],
                       "samples": [len(f) for _, f in gathered]}
        if trainer.global_rank == 0:
            print(f"AssertDisjointShards: epoch {trainer.current_epoch}: {world} ranks, batches per rank "
                  f"{self.report['batches']}, disjoint", flush=True)
