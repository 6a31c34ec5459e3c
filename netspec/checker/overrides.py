"""`--set key=value` overrides, applied to the syntax IR before checking.

In: a parsed ``ir.Spec`` and override strings (`train.epochs=1`, `hidden=256`,
`model.input=[1, 28, 28]`). Out: the spec with those settings and lets replaced (or added),
or a ``NetspecError`` naming each override that names nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from netspec import catalogue as cat
from netspec import ir
from netspec.errors import NO_SPAN, Diagnostic, NetspecError, Span, did_you_mean
from netspec.syntax.parser import parse_value


def apply_overrides(spec: ir.Spec, overrides: Iterable[str]) -> ir.Spec:
    """`--set train.epochs=1`, `--set hidden=256`, `--set model.input=[1, 28, 28]`."""
    items = list(spec.items)
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
        section, dot, name = key.partition(".")
        span = Span(file, 1, 1, 1, len(raw) + 1)
        if not dot:
            idx = [j for j, it in enumerate(items) if isinstance(it, ir.Let) and it.name == key]
            if not idx:
                lets = [it.name for it in items if isinstance(it, ir.Let)]
                errors.append(Diagnostic(f"--set {key}: there is no `let {key}` in {spec.file}", NO_SPAN, "error",
                                         did_you_mean(key, lets) or "use section.key for settings, e.g. train.epochs=3"))
                continue
            items[idx[0]] = ir.Let(key, value, items[idx[0]].span)
            continue
        if section == "model":
            models = [j for j, it in enumerate(items) if isinstance(it, ir.Model)]
            if name not in ("input", "init") or not models:
                errors.append(Diagnostic(f"--set model.{name}: only model.input and model.init can be set", NO_SPAN))
                continue
            m = items[models[0]]
            assert isinstance(m, ir.Model)
            rest = tuple(s for s in m.settings if s.key != name)
            items[models[0]] = replace(m, settings=rest + (ir.Setting(name, value, span, span),))
            continue
        if section not in cat.SECTIONS:
            errors.append(Diagnostic(f"--set {key}: unknown section `{section}`", NO_SPAN, "error",
                                     did_you_mean(section, [*cat.SECTIONS, "model"]) or "sections: data, train, export, model"))
            continue
        keys = [s.key for s in cat.SECTIONS[section]]
        if name not in keys:
            errors.append(Diagnostic(f"--set {key}: unknown key `{name}` in {section}", NO_SPAN, "error",
                                     did_you_mean(name, keys) or "keys: " + ", ".join(keys)))
            continue
        idx = [j for j, it in enumerate(items) if isinstance(it, ir.Section) and it.kind == section]
        setting = ir.Setting(name, value, span, span)
        if idx:
            sec = items[idx[0]]
            assert isinstance(sec, ir.Section)
            kept = tuple(e for e in sec.entries if not (isinstance(e, ir.Setting) and e.key == name))
            items[idx[0]] = replace(sec, entries=kept + (setting,))
        else:
            items.append(ir.Section(section, (setting,), span))
    if errors:
        raise NetspecError(errors)
    return replace(spec, items=tuple(items))
