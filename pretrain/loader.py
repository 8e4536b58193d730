"""Language-model batches streamed from a token-id file, without loading the corpus into memory.

The flat id array (`train.bin`, a `np.memmap`) is cut into `bs` contiguous streams (× the number of processes
under DDP, each rank reading its own `bs`). Batch `k` holds, for every stream, the next `seq_len` tokens and the
tokens one step ahead, so the model's hidden state carries over from one batch to the next. On the train split
each epoch starts the streams at a fresh random offset (the array is read as a ring) and draws AWD-LSTM's
variable sequence lengths; both come from `(seed, epoch)` alone, so a resumed run sees exactly the same batches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

MIN_SEQ_LEN = 5


class StreamLoader:
    """Iterate `(x, y)` int64 tensors of shape `(bs, seq_len)`; `len()` is the number of batches this epoch."""

    n_inp = 1

    def __init__(self, path: Path | str, dtype: str, bs: int, bptt: int, *, train: bool = True,
                 variable_bptt: bool = True, backwards: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu"):
        self.tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")
        self.bs, self.bptt, self.train = bs, bptt, train
        self.variable_bptt, self.backwards, self.seed = variable_bptt and train, backwards, seed
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.stream_len = (len(self.tokens) - 1) // (bs * world_size)
        if self.stream_len < 2:
            raise ValueError(f"{path} holds {len(self.tokens)} tokens: too few for {bs * world_size} streams")
        self.epoch = 0
        self.skip = 0  # batches to leave out at the start of the next epoch (resuming mid-epoch)
        self._plan()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._plan()

    def _plan(self) -> None:
        """The epoch's stream offset and sequence lengths, drawn from (seed, epoch)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        self.offset = int(rng.integers(len(self.tokens))) if self.train else 0
        lengths, pos, limit = [], 0, self.stream_len - 1
        while pos < limit:
            sl = self.bptt
            if self.variable_bptt:
                base = self.bptt if rng.random() < 0.95 else self.bptt / 2
                sl = max(MIN_SEQ_LEN, int(rng.normal(base, 5)))
            sl = min(sl, limit - pos)
            lengths.append(sl)
            pos += sl
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def to(self, device: torch.device | str) -> "StreamLoader":
        self.device = torch.device(device)
        return self

    def __iter__(self):
        n = len(self.tokens)
        starts = self.offset + (self.rank * self.bs + np.arange(self.bs)) * self.stream_len
        pos = sum(self.lengths[: self.skip])
        lengths, self.skip = self.lengths[self.skip:], 0
        pin = self.device.type == "cuda"
        for sl in lengths:
            idx = (starts[:, None] + pos + np.arange(sl + 1)[None, :]) % n
            if self.backwards:
                idx = n - 1 - idx
            chunk = torch.from_numpy(self.tokens[idx].astype(np.int64))
            if pin:
                chunk = chunk.pin_memory()
            chunk = chunk.to(self.device, non_blocking=True)
            pos += sl
            yield chunk[:, :-1], chunk[:, 1:]
