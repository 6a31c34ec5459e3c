"""The checker: syntax IR -> checked IR, as passes composed over one context.

    check(spec)                     ir.Spec -> ir.CheckedSpec (every error at once)
    check_context(spec)             the passes' context, errors and all (editors: what resolved)
    apply_overrides(spec, sets)     `--set key=value` on the syntax IR
    PASSES                          definitions, layout, sections, model, cross

See checker/pipeline.py for the order and checker/context.py for what the passes share.
"""

from __future__ import annotations

from netspec.checker.context import CheckContext
from netspec.checker.overrides import apply_overrides
from netspec.checker.pipeline import PASSES, check, check_context, checked_spec

__all__ = ["check", "check_context", "checked_spec", "apply_overrides", "CheckContext", "PASSES"]
