"""Syntax IR -> checked IR: the checker's entry point and the pipeline of its parts.

In: ``ir.Spec`` from parse.py (plus `--set` overrides). Out: ``ir.CheckedSpec`` with every
layer resolved against the catalogue, its full constructor arguments (inferred ones filled
in), input and output shapes, and typed data/train/export configs. All errors of a file
are collected, then raised as one ``NetspecError``; warnings (lints) ride along in
``CheckedSpec.warnings``. Pure Python: no torch import.

The parts, each a module: check_args.py (the shared context, arguments against schemas),
check_model.py (names, blocks, repeats, branches, layers, shapes), check_sections.py
(data/train/export), check_cross.py (across sections), check_data.py (reads the data's
headers and labels, cheaply).

    python -m netspec check examples/mnist.net
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import head
from netspec.checker.cross import CrossChecker
from netspec.checker.model import ModelChecker
from netspec.checker.sections import SectionChecker
from netspec.errors import NO_SPAN, Diagnostic, NetspecError, Span, did_you_mean
from netspec.syntax.expr import FAILED, evaluate
from netspec.syntax.parser import parse_file, parse_value

__all__ = ["check", "apply_overrides", "Checker"]


class Checker(ModelChecker, SectionChecker, CrossChecker):
    def run(self, read_data: bool = False) -> ir.CheckedSpec:
        items = self.spec.items
        self.load_definitions(self.spec, [os.path.abspath(self.spec.file)])
        models = [i for i in items if isinstance(i, ir.Model)]
        sections: dict[str, ir.Section] = {}
        for s in (i for i in items if isinstance(i, ir.Section)):
            if s.kind not in cat.SECTIONS:
                hint = did_you_mean(s.kind, [*cat.SECTIONS, "model", "block", "let", "import"])
                self.err(head(s.span, len(s.kind)), f"unknown section `{s.kind}`",
                         hint or "sections are model, data, train and export")
            elif s.kind in sections:
                self.err(head(s.span, len(s.kind)), f"duplicate `{s.kind}` section",
                         notes=[Diagnostic("first defined here", head(sections[s.kind].span, len(s.kind)), "note")])
            else:
                sections[s.kind] = s
        if not models:
            self.err(Span(self.spec.file, 1, 1, 1, 2), "no `model` in this file",
                     "add a model, e.g.\n    model net {\n        input: [784]\n        Linear(10)\n    }")
        for extra in models[1:]:
            self.err(head(extra.span, 5), f"a file holds exactly one model; `{extra.name}` is a second",
                     notes=[Diagnostic("first model here", head(models[0].span, 5), "note")])
        data = self.check_data(sections.get("data"))
        train = self.check_train(sections.get("train"))
        export = self.check_export(sections.get("export"))
        errors_before = len(self.diags)
        model = self.check_model(models[0]) if models else None
        if model is not None and len(self.diags) == errors_before:  # a failed layer has no shape to judge
            self.cross_checks(model, data, train)
        if self.diags:
            raise NetspecError(self.diags + self.warnings)
        assert model is not None
        checked = ir.CheckedSpec(self.spec, model, data, train, export, tuple(self.consts.items()),
                                 tuple(self.warnings), "train" in sections)
        if read_data and data is not None:
            from netspec.checker.data import check_data_files

            checked = check_data_files(checked)
        return checked

    def load_definitions(self, spec: ir.Spec, stack: list[str], loaded: set[str] | None = None,
                         let_spans: dict[str, Span] | None = None) -> None:
        """Lets and blocks of imports (depth first), then of this file, in source order.

        A file imported twice (`import "a.net"` twice, or a diamond: two imports that both
        import it) is one file by its real path and contributes its definitions once. A
        name defined in two places is an error pointing at both, for lets and blocks
        alike: two imported files defining it, or this file redefining an imported name."""
        if loaded is None:
            loaded = {os.path.realpath(p) for p in stack}
        if let_spans is None:
            let_spans = {}
        for imp in spec.of(ir.Import):
            path = self.import_path(spec, imp)
            if path is None:
                continue
            key = os.path.realpath(path)
            real_stack = [os.path.realpath(p) for p in stack]
            if key in real_stack:
                cycle = stack[real_stack.index(key):]
                chain = " -> ".join(os.path.basename(p) for p in [*cycle, path])
                self.err(imp.span, f"import cycle: {chain}", "move the shared blocks into a third file")
                continue
            if key in loaded:  # already imported through another path: its definitions are in
                continue
            loaded.add(key)
            try:
                sub = parse_file(path)
            except NetspecError as e:
                self.diags.extend(replace(d, notes=d.notes + (Diagnostic("imported here", imp.span, "note"),))
                                  for d in e.diagnostics)
                continue
            self.load_definitions(sub, [*stack, path], loaded, let_spans)
        for item in spec.items:
            if isinstance(item, ir.Let):
                name_span = head(item.span, 3 + 1 + len(item.name))
                first = let_spans.get(item.name)
                if first is not None:
                    self.err(name_span, f"`{item.name}` is defined twice",
                             notes=[Diagnostic("first defined here", first, "note")])
                else:
                    let_spans[item.name] = name_span
                if item.name == "in_shape":
                    self.err(name_span, "`in_shape` is reserved: it names the shape arriving at a layer")
                try:
                    self.consts[item.name] = evaluate(item.value, self.consts)
                except NetspecError as e:
                    self.absorb(e)
                    self.consts[item.name] = FAILED
            elif isinstance(item, ir.Block):
                name_span = head(item.span, 5 + len(item.name) + 1)
                prev = self.blocks.get(item.name)
                if prev is not None:
                    self.err(name_span, f"block `{item.name}` is defined twice",
                             notes=[Diagnostic("first defined here", head(prev.span, 5 + len(prev.name) + 1),
                                               "note")])
                if item.name in cat.LAYERS or item.name in cat.BRANCHES:
                    self.err(name_span,
                             f"block `{item.name}` has the name of a catalogue "
                             f"{'layer' if item.name in cat.LAYERS else 'branch construct'}", "rename the block")
                self.blocks[item.name] = item

    def import_path(self, spec: ir.Spec, imp: ir.Import) -> str | None:
        """Imports name .net files, relative to the importing file's folder."""
        if "\0" in imp.path or not imp.path:
            self.err(imp.span, "not a usable import path")
            return None
        if not imp.path.endswith(".net"):
            self.err(imp.span, f'cannot import "{imp.path}": imports must name a .net spec file')
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(spec.file), os.path.expanduser(imp.path)))
        if not os.path.exists(path):
            self.err(imp.span, f"cannot import \"{imp.path}\": no such file",
                     f"paths are relative to this file's folder ({os.path.dirname(spec.file) or '.'})")
            return None
        if not os.path.isfile(path):
            self.err(imp.span, f"cannot import \"{imp.path}\": not a regular file")
            return None
        return path


# ---------------------------------------------------------------- overrides


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


def check(spec: ir.Spec, *, target: str | None = None, read_data: bool = False) -> ir.CheckedSpec:
    """Check a parsed spec; raises NetspecError with every error found. `read_data`: also
    open the data files (headers, labels, sizes) and check them against the model and loss."""
    try:
        return Checker(spec, target).run(read_data)
    except RecursionError:
        raise NetspecError.at(Span(spec.file, 1, 1, 1, 2), "spec is nested too deeply") from None
