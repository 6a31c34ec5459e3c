"""Memory a model needs, estimated from the catalogue before anything is allocated.

In: a checked spec (parameter shapes come from catalogue rows; no torch needed for the
count). Out: byte estimates, and ``ensure_fits`` which stops a command with a clear error
(the figures, what to change) instead of a MemoryError or a machine swapping to death.
"""

from __future__ import annotations

import os

from netspec import ir
from netspec.errors import error

BYTES = {"fp32": 4, "bf16": 4, "fp16": 4}  # master weights stay float32 under autocast


def optimizer_states(cfg: ir.CallValue) -> int:
    """Tensors of parameter size the optimizer keeps per parameter."""
    kwargs = dict(cfg.kwargs)
    per = {"SGD": 1 if kwargs.get("momentum") else 0, "Adam": 2, "AdamW": 2, "Adamax": 2, "NAdam": 2, "RAdam": 2,
           "Adagrad": 1, "Adadelta": 2, "RMSprop": 1 + bool(kwargs.get("momentum")) + bool(kwargs.get("centered")),
           "Rprop": 2, "ASGD": 2, "LBFGS": 2 * int(kwargs.get("history_size", 100)) + 2}
    n = per.get(cfg.name, 2)
    if kwargs.get("amsgrad"):
        n += 1
    return n


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def available_bytes(device: str = "cpu") -> int | None:
    """Memory this process could still allocate on `device` (None when unknown)."""
    if device.startswith("cuda"):
        try:
            import torch

            free, _total = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:  # noqa: BLE001 - no CUDA, or an old driver: unknown
            return None
    system = _system_available()
    limited = cgroup_available()  # a container's or job's memory limit is lower than the machine's
    if system is None or limited is None:
        return system if limited is None else limited
    return min(system, limited)


def _system_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_available(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """What this process's memory cgroup (v1 or v2) still allows: limit - usage + its
    reclaimable file cache; None without a limit."""
    try:
        with open(proc, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = f"{root}{path}"
            files = ("memory.max", "memory.current", "file")
        elif "memory" in controllers.split(","):
            base = f"{root}/memory{path}"
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache")
        else:
            continue
        try:
            with open(f"{base}/{files[0]}", encoding="ascii") as f:
                raw = f.read().strip()
            if raw == "max" or int(raw) >= 1 << 60:
                continue
            with open(f"{base}/{files[1]}", encoding="ascii") as f:
                usage = int(f.read().strip())
            cache = 0
            with open(f"{base}/memory.stat", encoding="ascii") as f:
                for stat in f:
                    key, _, value = stat.partition(" ")
                    if key == files[2]:
                        cache = int(value)
            return max(int(raw) - usage + cache, 0)
        except (OSError, ValueError):
            continue
    return None


def ensure_fits(checked: ir.CheckedSpec, device: str = "cpu", training: bool = True) -> None:
    """Stop before allocating a model whose parameters (plus gradients and optimizer state
    when training) cannot fit in the memory available on `device`."""
    params = ir.parameter_count(checked.model.root)
    copies = 1
    if training:
        copies += 1 + optimizer_states(checked.train.optimizer)
    need = params * 4 * copies
    have = available_bytes(device)
    if have is None or need <= have * 0.9:
        return
    what = (f"weights, gradients and {copies - 2} optimizer state{'s' if copies != 3 else ''} "
            f"({checked.train.optimizer.name})") if training else "its weights"
    raise error(f"model `{checked.model.name}` has {params:,} parameters: {what} need about {gib(need)}, "
                f"but only {gib(have)} is available on {device}",
                "make the model smaller (fewer or narrower layers); `netspec summary` shows where the parameters are")
