"""Several processes on PyTorch's own engine: DDP, launched by torchrun.

In: the environment torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
or `netspec train --nproc N` (which starts torch.distributed.run itself).
Out: ``Dist`` (rank, world size, device, collectives), ``shard`` (a process's part of a
global batch and the loss scale that makes the averaged gradient the single-process one),
``SyncBatchNormCPU`` (torch's SyncBatchNorm refuses CPU tensors; this one all-reduces the
batch statistics over gloo with autograd), and ``launch`` (the `--nproc` launcher).

    netspec train resnet.net --nproc 4
    torchrun --nproc-per-node 4 -m netspec train resnet.net
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn

from netspec.errors import error


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    parent: int = 0  # the launcher's pid (torchrun starts workers in sessions of their own)

    def orphaned(self) -> bool:
        """Whether the launcher is gone (killed with SIGKILL, say): a worker must not train on
        alone, writing checkpoints nobody asked for."""
        return self.enabled and self.parent > 1 and os.getppid() != self.parent

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_same(self, value: Any) -> list[Any]:
        """Every process's `value` (for checks that all agree)."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, value)
        return out

    def close(self) -> None:
        """Leave the group together: a process that tore it down while another still used it
        would abort the job at the very end."""
        if self.enabled and torch.distributed.is_initialized():
            try:
                torch.distributed.barrier()
            finally:
                torch.distributed.destroy_process_group()


def from_environment(device: str) -> Dist:
    """Join the process group torchrun described in the environment (a single process when
    WORLD_SIZE is absent or 1). NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    timeout = timedelta(seconds=float(os.environ.get("NETSPEC_DIST_TIMEOUT", "600")))
    try:
        torch.distributed.init_process_group(backend, rank=rank, world_size=world, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - rendezvous failures come in many types
        raise error(f"could not join the process group (rank {rank} of {world}, {backend}): "
                    f"{str(e).splitlines()[0]}",
                    "check MASTER_ADDR/MASTER_PORT and that every node runs the same command") from None
    return Dist(rank, world, local, os.getppid())


def shard(indices: np.ndarray, dist: Dist, reduction: str) -> tuple[np.ndarray, int, float]:
    """This process's part of one global batch: (its indices, the offset of its first sample
    in the batch, the loss scale). DDP averages gradients over processes; scaling process
    r's mean loss by n_r * world / n makes that average the single-process gradient of the
    whole batch, even for an uneven last batch. A batch smaller than the world is given
    whole to every process (each then computes the single-process gradient)."""
    n = len(indices)
    if not dist.enabled:
        return indices, 0, 1.0
    if n < dist.world:
        return indices, 0, 1.0
    sizes = [n // dist.world + (1 if r < n % dist.world else 0) for r in range(dist.world)]
    start = sum(sizes[: dist.rank])
    part = indices[start : start + sizes[dist.rank]]
    scale = float(dist.world) if reduction == "sum" else len(part) * dist.world / n
    return part, start, scale


def contiguous_shard(n: int, dist: Dist) -> range:
    """This process's contiguous share of n evaluation samples (each counted exactly once)."""
    if not dist.enabled:
        return range(n)
    sizes = [n // dist.world + (1 if r < n % dist.world else 0) for r in range(dist.world)]
    start = sum(sizes[: dist.rank])
    return range(start, start + sizes[dist.rank])


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole global batch across
    processes, for CPU tensors (gloo), where torch.nn.SyncBatchNorm refuses to run. Same
    parameters and buffers as the BatchNorm it replaces (state_dict keys unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist_ok = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not (self.training and dist_ok and torch.distributed.get_world_size() > 1):
            return super().forward(x)
        import warnings

        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / max(x.shape[1], 1)], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        with warnings.catch_warnings():  # the autograd-aware all_reduce is public but marked for renaming
            warnings.simplefilter("ignore", FutureWarning)
            stats = all_reduce(stats)
        c = x.shape[1]
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c:2 * c] / total - mean * mean).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                tracked = self.get_buffer("num_batches_tracked")
                tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                unbiased = var * (total / (total - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers share statistics across processes: torch's SyncBatchNorm on CUDA,
    SyncBatchNormCPU on the CPU. Names, parameters and buffers stay the same."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, SyncBatchNormCPU):
            base = type(m)
            m.__class__ = type(f"SyncCPU{base.__name__}", (SyncBatchNormCPU, base), {})
    return model


# ---------------------------------------------------------------- the launcher


def launch(argv: list[str], nproc: int, nnodes: int, node_rank: int, master_addr: str | None,
           master_port: int | None) -> int:
    """`netspec train ... --nproc N`: run `torch.distributed.run` with this command (minus the
    launcher options) as its module; returns the exit status of the job."""
    import subprocess

    cmd = [sys.executable, "-c", "from netspec.train.distributed import torchrun; torchrun()", f"--nproc-per-node={nproc}",
           f"--nnodes={nnodes}",
           f"--node-rank={node_rank}", "--max-restarts=0"]
    if nnodes == 1 and master_addr is None and master_port is None:
        cmd.append("--standalone")
    else:
        cmd += [f"--master-addr={master_addr or '127.0.0.1'}", f"--master-port={master_port or 29500}"]
    cmd += ["-m", "netspec", *argv]
    env = {**os.environ, "NETSPEC_LAUNCHED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:
        return 130


def torchrun() -> None:
    """`python -m torch.distributed.run` (same arguments, same agent), without its Python traceback
    and failure box when a process fails: the process has said what went wrong, the launcher
    says that the job failed; exits with the first failing process's status."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):  # its ERROR line repeats the failure box
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(sys.argv[1:]))
    except ChildFailedError as e:
        codes = [f.exitcode for _, f in sorted(e.failures.items()) if f.exitcode]
        sys.exit(next((c for c in codes if c > 0), 1))
    except KeyboardInterrupt:
        sys.exit(130)


def strip_launcher_args(argv: list[str]) -> list[str]:
    """The train command line without --nproc/--nnodes/--node-rank/--master-addr/--master-port."""
    out: list[str] = []
    skip = False
    names = ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port")
    for a in argv:
        if skip:
            skip = False
            continue
        if a in names:
            skip = True
            continue
        if any(a.startswith(n + "=") for n in names):
            continue
        out.append(a)
    return out
