"""netspec: a declarative model-spec compiler for PyTorch.

One function per phase:  parse (text -> ir.Spec), check (ir.Spec -> ir.CheckedSpec),
build (ir.CheckedSpec -> torch.nn.Sequential), compile_file (path -> nn.Sequential).
torch is imported only by build and the commands that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netspec.checker import apply_overrides
from netspec.checker import check as _check
from netspec.errors import DataError, NetspecError
from netspec.syntax.parser import parse, parse_file

if TYPE_CHECKING:
    import torch

    from netspec import ir

__version__ = "0.1.0"
__all__ = ["parse", "parse_file", "check", "build", "compile_file", "load", "NetspecError", "DataError"]


def check(spec: ir.Spec, *, target: str | None = None) -> ir.CheckedSpec:
    """Resolve names, arguments, blocks and shapes; raise NetspecError listing every error."""
    return _check(spec, target=target)


def load(path: str, overrides: tuple[str, ...] = (), target: str | None = None,
         read_data: bool = False) -> ir.CheckedSpec:
    """Parse and check a file, applying `--set`-style overrides; `read_data` also checks
    the data files against the model and loss (what `netspec check` does)."""
    spec = parse_file(path)
    if overrides:
        spec = apply_overrides(spec, overrides)
    return _check(spec, target=target, read_data=read_data)


def build(checked: ir.CheckedSpec, seed: int | None = None) -> torch.nn.Sequential:
    """The checked model as nn.Sequential(OrderedDict), initialised deterministically."""
    from netspec.builder import build_model

    return build_model(checked.model, checked.train.seed if seed is None else seed)


def compile_file(path: str, seed: int | None = None) -> torch.nn.Sequential:
    """parse + check + build in one call."""
    return build(load(path), seed)
