"""netspec's own expression evaluator: spec values are data, never Python code.

In: ``ir.Expr`` trees and an environment of constants.
Out: plain values (int, float, str, bool, None, tuples, ``Symbol``) from ``evaluate``,
or numpy arrays from ``evaluate_table`` (the `table(...)` data language: linspace,
arange, normal/uniform noise, math functions, arithmetic). Anything else is a
``NetspecError`` at the expression's position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from netspec import ir
from netspec.catalogue import CONSTANTS, TABLE_FUNCTIONS
from netspec.errors import NetspecError, did_you_mean

MAX_INT = (1 << 63) - 1  # torch's int64: larger integers are refused, not carried as bignums
MAX_STRING = 65_536  # characters in a string value
MAX_ELEMENTS = 20_000_000  # values in one table array (160 MB as float64)


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Failed:
    """The value of a `let` whose expression was an error (already reported): using it
    raises an error with no diagnostics, so one mistake is reported once, not at every use."""

    def __repr__(self) -> str:
        return "<failed>"


FAILED = Failed()


def bounded(v: Any, span) -> Any:
    """Every value the evaluator builds stays small: finite floats, int64 integers, strings
    of at most MAX_STRING characters (so `let` chains cannot exhaust memory)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) > MAX_INT:
        raise NetspecError.at(span, "integer too large (beyond 64 bits)")
    if isinstance(v, float) and not math.isfinite(v):
        raise NetspecError.at(span, "number too large" if not math.isnan(v) else "not a number (NaN)")
    if isinstance(v, str) and len(v) > MAX_STRING:
        raise NetspecError.at(span, f"string too long ({len(v):,} characters; at most {MAX_STRING:,})")
    return v


def _arith(op: str, a: Any, b: Any, span) -> Any:
    return bounded(_raw_arith(op, a, b, span), span)


def _raw_arith(op: str, a: Any, b: Any, span) -> Any:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "//":
            return a // b
        if op == "%":
            return a % b
        if op == "**":
            if _num(a) and _num(b) and abs(b) > 1 and abs(a) > 1 and abs(b) * math.log2(abs(a)) > 64:
                raise NetspecError.at(span, "number too large")
            if _num(a) and _num(b) and a < 0 and not float(b).is_integer():
                raise NetspecError.at(span, "a negative number to a fractional power is not a real number")
            return a**b
    except ZeroDivisionError:
        raise NetspecError.at(span, "division by zero") from None
    except OverflowError:
        raise NetspecError.at(span, "number too large") from None
    raise NetspecError.at(span, f"unknown operator {op}")


def evaluate(e: ir.Expr, env: Mapping[str, Any], *, symbols: bool = False) -> Any:
    """Evaluate a constant expression. Bare unknown names become ``Symbol`` when
    ``symbols`` is true (`batch_size: full`); otherwise they are errors."""
    if isinstance(e, ir.Num):
        return bounded(e.value, e.span)
    if isinstance(e, ir.Str):
        return bounded(e.value, e.span)
    if isinstance(e, ir.Bool):
        return e.value
    if isinstance(e, ir.NoneLit):
        return None
    if isinstance(e, ir.Index):
        return _index(evaluate(e.value, env), evaluate(e.index, env), e)
    if isinstance(e, ir.Ref):
        if e.name in env:
            v = env[e.name]
            if v is FAILED:
                raise NetspecError([])
            return v
        if e.name in CONSTANTS:
            return CONSTANTS[e.name]
        if symbols:
            return ir.Symbol(e.name)
        hint = did_you_mean(e.name, [*env, *CONSTANTS])
        raise NetspecError.at(e.span, f"unknown name `{e.name}`", hint)
    if isinstance(e, (ir.ListLit, ir.TupleLit)):
        return tuple(evaluate(i, env, symbols=symbols) for i in e.items)
    if isinstance(e, ir.UnaryOp):
        v = evaluate(e.operand, env)
        if not _num(v):
            raise NetspecError.at(e.span, f"`{e.op}` needs a number, got {show(v)}")
        return -v if e.op == "-" else v
    if isinstance(e, ir.BinOp):
        a, b = evaluate(e.left, env), evaluate(e.right, env)
        if e.op == "+" and isinstance(a, str) and isinstance(b, str):
            return bounded(a + b, e.span)
        if not (_num(a) and _num(b)):
            bad = a if not _num(a) else b
            raise NetspecError.at(e.span, f"`{e.op}` needs numbers, got {show(bad)}")
        return _arith(e.op, a, b, e.span)
    if isinstance(e, ir.Call):
        raise NetspecError.at(e.span, f"`{e.func}(...)` is not a value here")
    raise NetspecError.at(getattr(e, "span", None) or ir.NO_SPAN, "unsupported expression")


def _index(v: Any, i: Any, e: ir.Index) -> Any:
    if not isinstance(v, tuple):
        raise NetspecError.at(e.value.span, f"only lists and shapes can be indexed, got {show(v)}")
    if not (isinstance(i, int) and not isinstance(i, bool)):
        raise NetspecError.at(e.index.span, f"an index must be an integer, got {show(i)}")
    if not -len(v) <= i < len(v):
        what = "in_shape" if isinstance(e.value, ir.Ref) and e.value.name == "in_shape" else "the list"
        raise NetspecError.at(e.span, f"index {i} is out of range: {what} is {show(v)} ({len(v)} items)",
                              f"indices run from 0 to {len(v) - 1} (or -1 for the last)" if v else None)
    item = v[i]
    if item is None and isinstance(e.value, ir.Ref) and e.value.name == "in_shape":
        raise NetspecError.at(e.span, f"in_shape[{i}] is a variable dimension `_`; it has no fixed size here")
    return item


def show(v: object) -> str:
    """A value as the user would write it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, ir.Symbol):
        return v.name
    if isinstance(v, ir.CallValue):
        return v.name + "(" + ", ".join(f"{k}={show(x)}" for k, x in v.kwargs) + ")"
    if isinstance(v, float):
        return repr(v)
    return str(v)


# binding strength as the grammar defines it: sum < product < unary < power < postfix/atom
_SUM, _PRODUCT, _UNARY, _POWER, _POSTFIX = 1, 2, 3, 4, 5
_OP_LEVEL = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "//": _PRODUCT, "%": _PRODUCT, "**": _POWER}


def _level(e: ir.Expr) -> int:
    if isinstance(e, ir.BinOp):
        return _OP_LEVEL[e.op]
    if isinstance(e, ir.UnaryOp) or (isinstance(e, ir.Num) and e.value < 0):
        return _UNARY
    return _POSTFIX


def source(e: ir.Expr, need: int = 0) -> str:
    """An expression back as canonical source text that parses to the same tree: only the
    parentheses the grammar needs (`(2 + 2) * 4` stays so; `2 + (2 * 4)` becomes `2 + 2 * 4`)."""
    text = _source(e)
    return f"({text})" if _level(e) < need else text


def _source(e: ir.Expr) -> str:
    if isinstance(e, ir.Num):
        return repr(e.value)
    if isinstance(e, (ir.Str, ir.Bool)):
        return show(e.value)
    if isinstance(e, ir.NoneLit):
        return "none"
    if isinstance(e, ir.Ref):
        return e.name
    if isinstance(e, ir.ListLit):
        return "[" + ", ".join(source(i) for i in e.items) + "]"
    if isinstance(e, ir.TupleLit):
        inner = ", ".join(source(i) for i in e.items)
        return f"({inner},)" if len(e.items) == 1 else f"({inner})"
    if isinstance(e, ir.UnaryOp):
        return e.op + source(e.operand, _UNARY)
    if isinstance(e, ir.Index):
        return f"{source(e.value, _POSTFIX)}[{source(e.index)}]"
    if isinstance(e, ir.BinOp):
        level = _OP_LEVEL[e.op]
        if e.op == "**":  # right-associative: the left side must be a postfix expression
            return f"{source(e.left, _POSTFIX)} ** {source(e.right, _UNARY)}"
        return f"{source(e.left, level)} {e.op} {source(e.right, level + 1)}"
    if isinstance(e, ir.Call):
        parts = [source(a) for a in e.args] + [f"{k.name}={source(k.value)}" for k in e.kwargs]
        return f"{e.func}(" + ", ".join(parts) + ")"
    return "?"


# ---------------------------------------------------------------- table expressions

TABLE_ARITY = {
    "linspace": (3, 3), "arange": (1, 3), "normal": (3, 3), "uniform": (3, 3), "randint": (3, 3),
    "zeros": (1, 1), "ones": (1, 1), "range": (1, 3), "stack": (1, 64), "concat": (1, 64),
    "reshape": (2, 2), "round": (1, 1), "floor": (1, 1), "sum": (1, 2), "mean": (1, 2),
    "cumsum": (1, 2), "flip": (1, 2), "min": (1, 2), "max": (1, 2),
}


def validate_table(e: ir.Expr, env: Mapping[str, object], columns: set[str]) -> list[NetspecError]:
    """Static check of a table expression: known functions, names and arity."""
    errors: list[NetspecError] = []

    def walk(x: ir.Expr) -> None:
        if isinstance(x, ir.Ref):
            if x.name not in env and x.name not in CONSTANTS and x.name not in columns:
                errors.append(NetspecError.at(x.span, f"unknown name `{x.name}` in table expression",
                                              did_you_mean(x.name, [*env, *CONSTANTS, *columns])))
        elif isinstance(x, ir.Call):
            if x.func not in TABLE_FUNCTIONS:
                errors.append(NetspecError.at(x.name_span or x.span, f"unknown function `{x.func}` in table expression",
                                              did_you_mean(x.func, TABLE_FUNCTIONS) or
                                              "available: " + ", ".join(TABLE_FUNCTIONS)))
                return
            lo, hi = TABLE_ARITY.get(x.func, (1, 1))
            n = len(x.args)
            if x.kwargs:
                errors.append(NetspecError.at(x.kwargs[0].span, f"`{x.func}` takes positional arguments only"))
            if not lo <= n <= hi:
                want = str(lo) if lo == hi else f"{lo} to {hi}"
                errors.append(NetspecError.at(x.span, f"`{x.func}` takes {want} argument{'' if want == '1' else 's'}, got {n}"))
            for a in x.args:
                walk(a)
        elif isinstance(x, (ir.ListLit, ir.TupleLit)):
            for i in x.items:
                walk(i)
        elif isinstance(x, ir.BinOp):
            walk(x.left)
            walk(x.right)
        elif isinstance(x, ir.UnaryOp):
            walk(x.operand)

    walk(e)
    return errors


def evaluate_table(e: ir.Expr, env: Mapping[str, Any], rng: Any) -> Any:
    """Evaluate a table expression to a numpy array (float64). ``rng``: numpy Generator."""
    import numpy as np

    def size_of(v: Any, span) -> tuple[int, ...]:
        shape = tuple(int(x) for x in np.atleast_1d(np.asarray(v)).ravel())
        if any(s < 0 for s in shape) or math.prod(shape) > MAX_ELEMENTS:
            raise NetspecError.at(span, f"size {list(shape)} is too large or negative")
        return shape

    def ev(x: ir.Expr) -> Any:
        if isinstance(x, ir.Num):
            return x.value
        if isinstance(x, ir.Ref):
            if x.name in env:
                return env[x.name]
            if x.name in CONSTANTS:
                return CONSTANTS[x.name]
            raise NetspecError.at(x.span, f"unknown name `{x.name}`")
        if isinstance(x, (ir.ListLit, ir.TupleLit)):
            items = [ev(i) for i in x.items]
            try:
                return np.array(items, dtype=np.float64)
            except ValueError:
                raise NetspecError.at(x.span, "rows of a nested list must have equal lengths") from None
        if isinstance(x, ir.UnaryOp):
            v = ev(x.operand)
            return -v if x.op == "-" else v
        if isinstance(x, ir.BinOp):
            a, b = ev(x.left), ev(x.right)
            try:
                with np.errstate(all="ignore"):
                    if x.op == "**":
                        return np.power(np.asarray(a, dtype=np.float64), b)
                    if x.op in ("/", "//", "%") and np.any(np.asarray(b) == 0):
                        raise NetspecError.at(x.span, "division by zero")
                    return _arith(x.op, np.asarray(a, dtype=np.float64) if not np.isscalar(a) else a, b, x.span)
            except ValueError as err:
                raise NetspecError.at(x.span, f"shapes do not match: {err}") from None
        if isinstance(x, ir.Call):
            args = [ev(a) for a in x.args]
            f = x.func
            try:
                if f == "linspace":
                    n = int(args[2])
                    if n < 1 or n > MAX_ELEMENTS:
                        raise NetspecError.at(x.span, f"linspace needs 1 to {MAX_ELEMENTS} points, got {n}")
                    return np.linspace(float(args[0]), float(args[1]), n)
                if f in ("arange", "range"):
                    a = np.arange(*[float(v) for v in args])
                    if a.size > MAX_ELEMENTS:
                        raise NetspecError.at(x.span, "arange gives too many values")
                    return a
                if f == "normal":
                    return rng.normal(float(args[0]), float(args[1]), size_of(args[2], x.span))
                if f == "uniform":
                    return rng.uniform(float(args[0]), float(args[1]), size_of(args[2], x.span))
                if f == "randint":
                    return rng.integers(int(args[0]), int(args[1]), size_of(args[2], x.span)).astype(np.float64)
                if f == "zeros":
                    return np.zeros(size_of(args[0], x.span))
                if f == "ones":
                    return np.ones(size_of(args[0], x.span))
                if f == "stack":
                    return np.stack([np.asarray(a, dtype=np.float64) for a in args], axis=-1)
                if f == "concat":
                    return np.concatenate([np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in args])
                if f == "reshape":
                    return np.reshape(np.asarray(args[0], dtype=np.float64), [int(v) for v in np.atleast_1d(args[1])])
                if f in ("cumsum", "flip"):  # along the last axis (or the one given): never flattened
                    fn2 = np.cumsum if f == "cumsum" else np.flip
                    return fn2(np.asarray(args[0], dtype=np.float64), axis=int(args[1]) if len(args) == 2 else -1)
                if f in ("sum", "mean") and len(args) == 2:
                    fn = np.sum if f == "sum" else np.mean
                    return fn(np.asarray(args[0], dtype=np.float64), axis=int(args[1]))
                if f == "sigmoid":
                    return 1.0 / (1.0 + np.exp(-np.asarray(args[0], dtype=np.float64)))
                if f == "min":
                    return np.minimum(*args) if len(args) == 2 else np.min(args[0])
                if f == "max":
                    return np.maximum(*args) if len(args) == 2 else np.max(args[0])
                simple: dict[str, Any] = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
                          "sqrt": np.sqrt, "abs": np.abs, "tanh": np.tanh, "round": np.round,
                          "floor": np.floor, "sum": np.sum, "mean": np.mean, "cumsum": np.cumsum, "flip": np.flip}
                if f in simple:
                    with np.errstate(all="ignore"):
                        return simple[f](np.asarray(args[0], dtype=np.float64))
            except NetspecError:
                raise
            except (ValueError, TypeError, IndexError) as err:
                raise NetspecError.at(x.span, f"`{f}`: {err}") from None
            raise NetspecError.at(x.span, f"unknown function `{f}`")
        raise NetspecError.at(getattr(x, "span", ir.NO_SPAN), "this is not allowed in a table expression")

    return ev(e)
