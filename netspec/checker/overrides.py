"""`--set key=value` overrides, applied to the syntax IR before checking, and the paths they
name (a `search` key names the same paths).

In: a parsed ``ir.Spec`` and override strings. Out: the spec with those settings and lets
replaced (or added), or a ``NetspecError`` naming each override that names nothing.

Every path `netspec diff` prints can be set:

    hidden=256, let hidden=256        a `let` of the file
    model.input=[1, 28, 28]           model.input, model.init, model.name
    train.epochs=3                    a key of data / train / export / search
    train.optimizer.lr=3e-3           an argument of the call a setting holds: the loss,
    train.scheduler.gamma=0.5         optimizer, scheduler and early_stopping of train, the
    data.train.path="more.csv"        train/test sources of data (written or defaulted)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.errors import NO_SPAN, Diagnostic, NetspecError, Span, did_you_mean
from netspec.syntax.expr import source
from netspec.syntax.parser import parse_value

MODEL_KEYS = ("input", "init", "name")
# settings that hold one call, and the catalogue table of what it may call
CALL_TABLES: dict[tuple[str, str], Mapping[str, Any]] = {
    ("train", "loss"): cat.LOSSES,
    ("train", "optimizer"): cat.OPTIMIZERS,
    ("train", "scheduler"): cat.SCHEDULERS,
    ("train", "early_stopping"): {"EarlyStopping": cat.EARLY_STOPPING},
    ("data", "train"): cat.SOURCES,
    ("data", "test"): cat.SOURCES,
}
# what to write first when a call-valued setting is absent and has no default call
WRITE_FIRST = {"scheduler": "StepLR(step_size=2)", "early_stopping": "EarlyStopping(patience=3)",
               "train": 'csv("data.csv", target="y")', "test": 'csv("test.csv", target="y")'}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class KeyProblem(Exception):
    """A key that names nothing settable: the message and a help line (did you mean ...)."""

    def __init__(self, message: str, help: str | None = None, unknown: bool = False):
        super().__init__(message)
        self.message, self.help = message, help
        self.unknown = unknown  # a name that is not there (a typo?), rather than a path that cannot be set


def apply_overrides(spec: ir.Spec, overrides: Iterable[str]) -> ir.Spec:
    """`--set train.epochs=1`, `--set hidden=256`, `--set train.optimizer.lr=3e-3`."""
    errors: list[Diagnostic] = []
    for i, text in enumerate(overrides):
        file = f"--set #{i + 1}"
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(Diagnostic(f"override `{text}` must look like key=value (e.g. train.epochs=3)", NO_SPAN))
            continue
        try:
            value = parse_value(raw, file)
        except NetspecError as e:
            errors.extend(e.diagnostics)
            continue
        try:
            spec = set_value(spec, key, value, Span(file, 1, 1, 1, len(raw) + 1))
        except KeyProblem as p:
            errors.append(Diagnostic(f"--set {key}: {p.message}", NO_SPAN, "error", p.help))
    if errors:
        raise NetspecError(errors)
    return spec


def canonical_key(key: str) -> str:
    """`let hidden` (as diff prints it) is `hidden`; blanks around dots go."""
    key = key.strip()
    if key.startswith("let ") and "." not in key:
        key = key[4:].strip()
    return ".".join(part.strip() for part in key.split("."))


def set_value(spec: ir.Spec, key: str, value: ir.Expr, span: Span = NO_SPAN) -> ir.Spec:
    """`spec` with the setting, `let` or argument at `key` replaced by `value` (added where the
    file does not write it). Raises KeyProblem when `key` names nothing that can be set."""
    key = canonical_key(key)
    items = list(spec.items)
    parts = key.split(".")
    if not all(_NAME.fullmatch(p) for p in parts):
        raise KeyProblem(f"`{key}` is not a key", "keys are `let` names or paths such as train.optimizer.lr")
    if len(parts) == 1:
        return replace(spec, items=tuple(_set_let(items, spec.file, key, value)))
    section, name, rest = parts[0], parts[1], parts[2:]
    if section == "model":
        return replace(spec, items=tuple(_set_model(items, name, rest, value, span)))
    if section not in cat.SECTIONS:
        lets = [it.name for it in items if isinstance(it, ir.Let)]
        raise KeyProblem(f"unknown section `{section}`", did_you_mean(section, [*cat.SECTIONS, "model", *lets])
                         or "sections: " + ", ".join([*cat.SECTIONS, "model"]), unknown=True)
    keys = [s.key for s in cat.SECTIONS[section]]
    if name not in keys:
        dotted = ".".join(parts[1:])
        raise KeyProblem(f"unknown key `{dotted}` in {section}", did_you_mean(name, keys) or "keys: " + ", ".join(keys),
                         unknown=True)
    idx = [j for j, it in enumerate(items) if isinstance(it, ir.Section) and it.kind == section]
    sec = items[idx[0]] if idx else None
    assert sec is None or isinstance(sec, ir.Section)
    current = next((e for e in (sec.entries if sec else ()) if isinstance(e, ir.Setting) and e.key == name), None)
    if rest:
        value = _set_argument(section, name, current.value if current else None, rest, value, span)
    setting = ir.Setting(name, value, current.span if current else span, current.key_span if current else span)
    if sec is None:
        items.append(ir.Section(section, (setting,), span))
    else:
        entries = tuple(setting if e is current else e for e in sec.entries) if current else sec.entries + (setting,)
        items[idx[0]] = replace(sec, entries=entries)
    return replace(spec, items=tuple(items))


def _set_let(items: list, file: str, name: str, value: ir.Expr) -> list:
    idx = [j for j, it in enumerate(items) if isinstance(it, ir.Let) and it.name == name]
    if not idx:
        lets = [it.name for it in items if isinstance(it, ir.Let)]
        hint = did_you_mean(name, lets)
        if not hint and name in cat.SECTIONS:
            hint = f"`{name}` is a section: give a key, e.g. {name}.{cat.SECTIONS[name][0].key}"
        raise KeyProblem(f"there is no `let {name}` in {file}",
                         hint or "use section.key for settings, e.g. train.epochs=3", unknown=True)
    items[idx[0]] = ir.Let(name, value, items[idx[0]].span)
    return items


def _set_model(items: list, name: str, rest: list[str], value: ir.Expr, span: Span) -> list:
    models = [j for j, it in enumerate(items) if isinstance(it, ir.Model)]
    if name not in MODEL_KEYS or rest or not models:
        raise KeyProblem(f"`model.{'.'.join([name, *rest])}` cannot be set: only model.input, model.init and "
                         "model.name can", did_you_mean(name, MODEL_KEYS))
    m = items[models[0]]
    assert isinstance(m, ir.Model)
    if name == "name":
        new = value.name if isinstance(value, ir.Ref) else value.value if isinstance(value, ir.Str) else None
        if not isinstance(new, str) or not _NAME.fullmatch(new):
            raise KeyProblem(f"a model name is a name (letters, digits, `_`), got `{source(value)}`")
        items[models[0]] = replace(m, name=new)
        return items
    rest_settings = tuple(s for s in m.settings if s.key != name)
    items[models[0]] = replace(m, settings=rest_settings + (ir.Setting(name, value, span, span),))
    return items


def _set_argument(section: str, name: str, current: ir.Expr | None, path: list[str], value: ir.Expr,
                  span: Span) -> ir.Expr:
    """The call at `section.name` with its argument `path[0]` replaced by `value` (by position
    if it was given by position, else by keyword)."""
    key = f"{section}.{name}"
    table = CALL_TABLES.get((section, name))
    if table is None:
        raise KeyProblem(f"`{key}` does not hold a call with arguments; set it whole: {key}=...")
    if current is None:
        default = next(s.default for s in cat.SECTIONS[section] if s.key == name)
        if not isinstance(default, str):
            example = WRITE_FIRST.get(name, "...")
            raise KeyProblem(f"`{key}` is not set, so it has no `{path[0]}`",
                             f"set the whole {name} first, e.g. {key}={example}")
        current = parse_value(default, "<default>")
    call = current
    if isinstance(call, ir.Ref):
        call = ir.Call(call.name, (), (), call.span, call.span)
    if not isinstance(call, ir.Call):
        raise KeyProblem(f"`{key}` is {source(current)}, not a call; set it whole: {key}=...")
    row = table.get(call.func)
    if row is None:
        raise KeyProblem(f"`{key}` calls `{call.func}`, which is not one of its kind",
                         did_you_mean(call.func, table) or f"set it whole: {key}=...")
    params = row if isinstance(row, tuple) else row.params
    names = [p.name for p in params]
    positional = [] if call.func == "table" else names
    arg = path[0]
    if len(path) > 1:
        raise KeyProblem(f"`{key}.{'.'.join(path)}`: `{arg}` of {call.func} has no arguments to set")
    if arg not in names:
        raise KeyProblem(f"{call.func} has no argument `{arg}`",
                         did_you_mean(arg, names) or "its arguments: " + ", ".join(names), unknown=True)
    where = positional.index(arg) if arg in positional else len(call.args)
    if where < len(call.args):
        args = call.args[:where] + (value,) + call.args[where + 1:]
        return replace(call, args=args)
    kwargs = tuple(ir.Kwarg(k.name, value, k.span) if k.name == arg else k for k in call.kwargs)
    if not any(k.name == arg for k in call.kwargs):
        kwargs += (ir.Kwarg(arg, value, span),)
    return replace(call, kwargs=kwargs)


def key_problem(spec: ir.Spec, key: str) -> KeyProblem | None:
    """Why `key` cannot be set in `spec` (None: it can): tried on a stand-in value."""
    try:
        set_value(spec, key, ir.Num(0))
    except KeyProblem as p:
        return p
    return None


def settable_keys(spec: ir.Spec) -> list[str]:
    """Names for "did you mean": the file's lets, every section key, and the arguments of
    the calls the spec writes (`train.optimizer.lr`)."""
    out = [it.name for it in spec.items if isinstance(it, ir.Let)]
    out += [f"model.{k}" for k in MODEL_KEYS]
    for section, settings in cat.SECTIONS.items():
        out += [f"{section}.{s.key}" for s in settings]
    for sec in spec.of(ir.Section):
        for e in sec.entries:
            calls = CALL_TABLES.get((sec.kind, e.key)) if isinstance(e, ir.Setting) else None
            func = e.value.func if isinstance(e, ir.Setting) and isinstance(e.value, ir.Call) else \
                e.value.name if isinstance(e, ir.Setting) and isinstance(e.value, ir.Ref) else None
            row = calls.get(func) if calls is not None and func is not None else None
            if row is not None:
                params = row if isinstance(row, tuple) else row.params
                out += [f"{sec.kind}.{e.key}.{p.name}" for p in params]
    if not any(isinstance(e, ir.Setting) and e.key == "optimizer" for s in spec.of(ir.Section) if s.kind == "train"
               for e in s.entries):
        out += [f"train.optimizer.{p.name}" for p in cat.OPTIMIZERS["SGD"].params]
    return list(dict.fromkeys(out))
