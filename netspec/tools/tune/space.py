"""A trial's values: drawn from the search space, written into the spec.

In: ``ir.SearchConfig`` and an Optuna trial (or the params a stored trial holds). Out: the
values as expressions (`{"hidden": Num(64), "train.optimizer.lr": Num(0.00316)}`), the
trial's spec (the values written in, no search section), its text for best.net, and the
spec's own values where the space holds them (a new study's first trial, the baseline).

Floats are written with 4 significant digits: what the trial trains with is what its
spec.net says, and best.net retrains to the same numbers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from netspec import ir
from netspec.checker.overrides import set_value
from netspec.checker.search import literal, without_search
from netspec.errors import NO_SPAN, NetspecError
from netspec.syntax.expr import source

FLOAT_DIGITS = 4


def suggest(trial: Any, config: ir.SearchConfig) -> dict[str, Any]:
    """Ask the trial for every key's value (Optuna's own distributions)."""
    out: dict[str, Any] = {}
    for p in config.params:
        if p.kind == "choice":
            out[p.key] = trial.suggest_categorical(p.key, list(p.labels))
        elif p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), step=p.step)
        else:
            out[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), log=p.kind == "loguniform")
    return out


def distributions(config: ir.SearchConfig) -> dict[str, Any]:
    """The Optuna distribution of every key (for enqueued and retried trials)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in config.params:
        if p.kind == "choice":
            out[p.key] = CategoricalDistribution(list(p.labels))
        elif p.kind == "int":
            out[p.key] = IntDistribution(int(p.low), int(p.high), step=p.step)
        else:
            out[p.key] = FloatDistribution(float(p.low), float(p.high), log=p.kind == "loguniform")
    return out


def rounded(v: float) -> float:
    return float(f"{v:.{FLOAT_DIGITS}g}") if math.isfinite(v) else v


def value_exprs(config: ir.SearchConfig, params: dict[str, Any]) -> dict[str, ir.Expr]:
    """Optuna's params -> the expression written into the spec for each key."""
    out: dict[str, ir.Expr] = {}
    for p in config.params:
        v = params[p.key]
        if p.kind == "choice":
            index = next(i for i, label in enumerate(p.labels) if type(label) is type(v) and label == v)
            out[p.key] = p.choices[index]
        elif p.kind == "int":
            out[p.key] = literal(int(v), NO_SPAN) or ir.Num(int(v))
        else:
            out[p.key] = literal(rounded(float(v)), NO_SPAN) or ir.Num(float(v))
    return out


def trial_spec(spec: ir.Spec, values: dict[str, ir.Expr]) -> ir.Spec:
    """The spec a trial trains: its values written in (a call before its arguments), without
    the search section."""
    spec = without_search(spec)
    for key in sorted(values, key=lambda k: k.count(".")):
        spec = set_value(spec, key, values[key])
    return spec


def shown(values: dict[str, ir.Expr]) -> str:
    return "  ".join(f"{k}={source(v)}" for k, v in values.items())


def texts(values: dict[str, ir.Expr]) -> dict[str, str]:
    return {k: source(v) for k, v in values.items()}


def own_params(checked: ir.CheckedSpec, config: ir.SearchConfig) -> dict[str, Any] | None:
    """The spec's own value of every key as Optuna params, when each lies in the space (a
    choice lists it, a range holds it); None otherwise."""
    out: dict[str, Any] = {}
    for p in config.params:
        v = current_value(checked, p.key)
        if v is _UNKNOWN:
            return None
        if p.kind == "choice":
            label = next((lb for lb in p.labels if _same(lb, v)), _UNKNOWN)
            if label is _UNKNOWN:
                label = _compiled_same(checked, p, v)
            if label is _UNKNOWN:
                return None
            out[p.key] = label
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not p.low <= v <= p.high:  # type: ignore[operator]
            return None
        if p.kind == "int":
            if not float(v).is_integer() or (int(v) - int(p.low)) % p.step:
                return None
            v = int(v)
        out[p.key] = v
    return out


_UNKNOWN = object()


def _compiled_same(checked: ir.CheckedSpec, p: ir.SearchParam, v: Any) -> Any:
    """The label of the choice that, written into the spec, gives the spec's own value
    (`SGD(lr=0.01)` against `SGD(lr=1e-2)`): each call or list choice checked."""
    from netspec.checker import check

    for label, expr in zip(p.labels, p.choices):
        if not isinstance(expr, (ir.Call, ir.ListLit)):
            continue
        try:
            variant = check(trial_spec(checked.spec, {p.key: expr}))
        except NetspecError:
            continue
        if current_value(variant, p.key) == v:
            return label
    return _UNKNOWN


def _same(label: Any, v: Any) -> bool:
    if isinstance(v, ir.Symbol):
        v = v.name
    if isinstance(label, bool) or isinstance(v, bool):
        return type(label) is type(v) and label == v
    return label == v and not isinstance(v, tuple)


def current_value(checked: ir.CheckedSpec, key: str) -> Any:
    """The value the checked spec has at `key` (written or defaulted); _UNKNOWN if none."""
    from netspec import catalogue as cat

    parts = key.split(".")
    if len(parts) == 1:
        return dict(checked.constants).get(key, _UNKNOWN)
    section, name, rest = parts[0], parts[1], parts[2:]
    if section == "model":
        return {"input": checked.model.input_shape, "name": checked.model.name}.get(name, _UNKNOWN)
    holder = {"data": checked.data, "train": checked.train, "export": checked.export}.get(section)
    if holder is None or not hasattr(holder, name):
        return _UNKNOWN
    value = getattr(holder, name)
    if not rest:
        return value
    if isinstance(value, ir.CallValue):
        kwargs = dict(value.kwargs)
        if rest[0] in kwargs:
            return kwargs[rest[0]]
        tables: dict[str, Any] = {"loss": cat.LOSSES, "optimizer": cat.OPTIMIZERS, "scheduler": cat.SCHEDULERS}
        row = tables.get(name, {}).get(value.name)
        params = row.params if row is not None else cat.EARLY_STOPPING if name == "early_stopping" else ()
        default = next((p.default for p in params if p.name == rest[0]), _UNKNOWN)
        return _UNKNOWN if default is cat.REQUIRED else default
    if isinstance(value, ir.Source):
        return dict(value.kwargs).get(rest[0], _UNKNOWN)
    return _UNKNOWN


def space_text(config: ir.SearchConfig) -> str:
    """The search space in a stable form (the study's identity)."""
    rows = []
    for p in config.params:
        if p.kind == "choice":
            rows.append(f"{p.key}: choice({', '.join(source(c) for c in p.choices)})")
        elif p.kind == "int":
            rows.append(f"{p.key}: int({p.low}, {p.high}, step={p.step})")
        else:
            rows.append(f"{p.key}: {p.kind}({p.low!r}, {p.high!r})")
    return json.dumps(rows)
