"""Batches of a split, on the training device.

In: a ``data.Split`` (raw samples: uint8 images, numbers; maybe a memory-mapped cache),
its ``Preprocessing`` and the device. Out: (x, y) batches as tensors on the device, x in
model units (images in [0, 1] float32, numbers float32, token ids int64).

A split that fits in memory (below RESIDENT_BYTES and a quarter of the free memory;
`NETSPEC_RESIDENT_BYTES` overrides) lives whole on the device in its raw dtype (MNIST: 47 MB
of uint8) and a batch is one index_select there. A larger one is read a batch at a time
from its file (in file order within the batch, so the page cache reads sequentially) by a
background thread that keeps PREFETCH batches ready, so the training step does not wait
for the disk and the process never holds the whole set.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from netspec.data.prepare import Preprocessing, Split
from netspec.train.loop import trim_padding

RESIDENT_BYTES = 2 << 30  # at most; and at most a quarter of the memory available
PREFETCH = 4
TORCH_DTYPES = {"uint8": torch.uint8, "float32": torch.float32, "int64": torch.int64, "int32": torch.int32}


def to_units(x: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Raw samples -> model units: uint8 images / 255 (the same float32 division numpy does
    for `predict`), token ids as int64, everything else float32."""
    if pre.tokens:
        return x.long()
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / pre.scale
    return x.to(torch.float32)


class Loader:
    def __init__(self, split: Split, pre: Preprocessing, device: torch.device, resident: bool | None = None):
        self.split = split
        self.pre = pre
        self.device = device
        self.texts = pre.kind == "text"  # padded token ids: a batch is as wide as its longest text
        nbytes = _nbytes(split)
        self.resident = nbytes <= resident_limit() if resident is None else resident
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        if self.resident:
            x = np.array(split.x) if split.index is None else split.rows(np.arange(len(split)))[0]  # a copy
            self.x = torch.from_numpy(np.ascontiguousarray(_native(x))).to(device)
            if split.y is not None:
                self.y = torch.from_numpy(np.ascontiguousarray(split.y)).to(device)

    def __len__(self) -> int:
        return len(self.split)

    def fetch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw x (on the device) and y of samples `idx` of the split (texts: padded to the
        longest text among them)."""
        if self.resident:
            assert self.x is not None
            t = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)).to(self.device)
            x = self.x.index_select(0, t)
            return trim_padding(x) if self.texts else x, (self.y.index_select(0, t) if self.y is not None else None)
        xb, yb = self.split.rows(np.asarray(idx))
        if self.texts:
            xb = xb[:, : max(1, int((xb != 0).sum(axis=1).max(initial=0)))]
        x = torch.from_numpy(np.ascontiguousarray(_native(xb)))
        y = torch.from_numpy(np.ascontiguousarray(yb)) if yb is not None else None
        if self.device.type == "cuda":
            x = x.pin_memory()
            y = y.pin_memory() if y is not None else None
        return x.to(self.device, non_blocking=True), (y.to(self.device, non_blocking=True) if y is not None else None)

    def batches(self, index_lists: Iterable[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """fetch() of each index list in turn; read ahead in a thread when streaming."""
        if self.resident:
            for idx in index_lists:
                yield self.fetch(idx)
            return
        yield from _prefetch(self.fetch, index_lists)

    def sequential(self, batch: int, part: range | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """The split in order (evaluation), `batch` samples at a time; `part`: a DDP process's share."""
        rows = part if part is not None else range(len(self.split))
        starts = range(rows.start, rows.stop, batch)
        yield from self.batches(np.arange(s, min(s + batch, rows.stop)) for s in starts)


def resident_limit() -> int:
    """How large a split may be to live whole on the device (the rest streams from disk)."""
    import os

    forced = os.environ.get("NETSPEC_RESIDENT_BYTES")
    if forced is not None:
        return int(forced)
    from netspec.train.resources import available_bytes

    free = available_bytes("cpu")
    return min(RESIDENT_BYTES, free // 4) if free else RESIDENT_BYTES


def _nbytes(split: Split) -> int:
    per = int(np.prod(split.x.shape[1:])) * split.x.dtype.itemsize
    return per * len(split)


def _native(a: np.ndarray) -> np.ndarray:
    """torch needs native byte order (IDX files are big-endian)."""
    return a.astype(a.dtype.newbyteorder("=")) if not a.dtype.isnative else a


_DONE = object()


def _prefetch(fetch: Any, index_lists: Iterable[np.ndarray]) -> Iterator[Any]:
    q: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def work() -> None:
        try:
            for idx in index_lists:
                if stop.is_set():
                    return
                q.put(fetch(idx))
            q.put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            q.put(e)

    thread = threading.Thread(target=work, name="netspec-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
