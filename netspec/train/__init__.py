"""Training: the loop (``loop``: torch and the standard library only, so `netspec eject`
copies it into its program), the run around it (``trainer``), what is checked before it
starts (``preflight``), checkpoints and resume (``checkpoint``), `netspec eval`
(``evaluate``), DDP (``distributed``), metrics, run folders, reports, plots and resources.

The entry points are re-exported lazily: `import netspec.train` imports no torch.

    from netspec.train import train_file, evaluate_file
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"train_file": "trainer", "Trainer": "trainer", "evaluate_file": "evaluate", "trained_model": "evaluate"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
