"""Syntax IR -> checked IR: names, arguments, blocks, shapes, sections, lints.

In: ``ir.Spec`` from parse.py (plus `--set` overrides). Out: ``ir.CheckedSpec`` with
every layer resolved against the catalogue, its full constructor arguments (inferred
ones filled in), input and output shapes, and typed data/train/export configs.
All errors of a file are collected, then raised as one ``NetspecError``; warnings
(lints) ride along in ``CheckedSpec.warnings``. Pure Python: no torch import.

    python -m netspec check examples/mnist.net
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from . import catalogue as cat
from . import ir
from .catalogue import P, ShapeError, describe_type, fmt_shape, type_ok
from .datasets import DATASETS
from .errors import NO_SPAN, Diagnostic, NetspecError, Span, did_you_mean
from .expr import evaluate, show, source, validate_table
from .parse import parse_file, parse_value

# attributes of nn.Sequential: add_module refuses them as child names
RESERVED_NAMES = frozenset(
    "T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu cuda "
    "double dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter "
    "get_submodule half insert ipu load_state_dict modules mtia named_buffers named_children named_modules "
    "named_parameters parameters pop register_backward_hook register_buffer register_forward_hook "
    "register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook "
    "register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module "
    "register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ "
    "set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu zero_grad".split()
)
MAX_LAYERS = 100_000


class _Abort(Exception):
    """Stop checking the current layer; its diagnostic is already recorded."""


class Checker:
    def __init__(self, spec: ir.Spec, target: str | None = None):
        self.spec = spec
        self.target = target
        self.diags: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.blocks: dict[str, ir.Block] = {}
        self.consts: dict[str, Any] = {}
        self.layer_count = 0
        self.layers_made = 0

    # ------------------------------------------------------------ diagnostics

    def err(self, span: Span, msg: str, help: str | None = None, notes: Iterable[Diagnostic] = ()) -> None:
        self.diags.append(Diagnostic(msg, span, "error", help, tuple(notes)))

    def warn(self, span: Span, msg: str, help: str | None = None) -> None:
        self.warnings.append(Diagnostic(msg, span, "warning", help))

    def absorb(self, e: NetspecError) -> None:
        self.diags.extend(e.diagnostics)

    # ------------------------------------------------------------ top level

    def run(self) -> ir.CheckedSpec:
        items = self.spec.items
        self.load_definitions(self.spec, [os.path.abspath(self.spec.file)])
        models = [i for i in items if isinstance(i, ir.Model)]
        sections: dict[str, ir.Section] = {}
        for s in (i for i in items if isinstance(i, ir.Section)):
            if s.kind not in cat.SECTIONS:
                hint = did_you_mean(s.kind, [*cat.SECTIONS, "model", "block", "let", "import"])
                self.err(_head(s.span, len(s.kind)), f"unknown section `{s.kind}`",
                         hint or "sections are model, data, train and export")
            elif s.kind in sections:
                self.err(_head(s.span, len(s.kind)), f"duplicate `{s.kind}` section",
                         notes=[Diagnostic("first defined here", _head(sections[s.kind].span, len(s.kind)), "note")])
            else:
                sections[s.kind] = s
        if not models:
            self.err(Span(self.spec.file, 1, 1, 1, 2), "no `model` in this file",
                     "add a model, e.g.\n    model net {\n        input: [784]\n        Linear(10)\n    }")
        for extra in models[1:]:
            self.err(_head(extra.span, 5), f"a file holds exactly one model; `{extra.name}` is a second",
                     notes=[Diagnostic("first model here", _head(models[0].span, 5), "note")])
        data = self.check_data(sections.get("data"))
        train = self.check_train(sections.get("train"))
        export = self.check_export(sections.get("export"))
        model = self.check_model(models[0]) if models else None
        if model is not None:
            self.cross_checks(model, data, train, sections)
        if self.diags:
            raise NetspecError(self.diags + self.warnings)
        assert model is not None
        return ir.CheckedSpec(self.spec, model, data, train, export, tuple(self.consts.items()),
                              tuple(self.warnings), "train" in sections)

    def load_definitions(self, spec: ir.Spec, stack: list[str]) -> None:
        """Lets and blocks of imports (depth first), then of this file, in source order."""
        for imp in spec.of(ir.Import):
            path = os.path.normpath(os.path.join(os.path.dirname(spec.file), imp.path))
            key = os.path.abspath(path)
            if key in stack:
                chain = " -> ".join(os.path.basename(p) for p in [*stack[stack.index(key):], key])
                self.err(imp.span, f"import cycle: {chain}", "move the shared blocks into a third file")
                continue
            if not os.path.exists(path):
                self.err(imp.span, f"cannot import \"{imp.path}\": no such file",
                         f"paths are relative to this file's folder ({os.path.dirname(spec.file) or '.'})")
                continue
            try:
                sub = parse_file(path)
            except NetspecError as e:
                self.absorb(e)
                continue
            self.load_definitions(sub, [*stack, key])
        for item in spec.items:
            if isinstance(item, ir.Let):
                if item.name in self.consts and spec is self.spec:
                    self.err(_head(item.span, 3 + 1 + len(item.name)), f"`{item.name}` is defined twice")
                try:
                    self.consts[item.name] = evaluate(item.value, self.consts)
                except NetspecError as e:
                    self.absorb(e)
            elif isinstance(item, ir.Block):
                prev = self.blocks.get(item.name)
                if prev is not None and prev.span.file == item.span.file:
                    self.err(_head(item.span, 5 + len(item.name) + 1), f"block `{item.name}` is defined twice",
                             notes=[Diagnostic("first defined here", _head(prev.span, 5), "note")])
                if item.name in cat.LAYERS:
                    self.err(_head(item.span, 5 + len(item.name) + 1),
                             f"block `{item.name}` has the name of a catalogue layer", "rename the block")
                self.blocks[item.name] = item

    # ------------------------------------------------------------ arguments

    def bind(self, what: str, params: tuple[P, ...], positional: tuple[P, ...], call: ir.Expr,
             env: Mapping[str, Any], allow_inferred_kw: bool = True) -> tuple[dict, dict, list[Diagnostic]]:
        """Evaluate a call's arguments against a schema. Returns (values, spans, problems)."""
        args: tuple[ir.Expr, ...] = call.args if isinstance(call, ir.Call) else ()
        kwargs: tuple[ir.Kwarg, ...] = call.kwargs if isinstance(call, ir.Call) else ()
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        problems: list[Diagnostic] = []
        by_name: dict[str, P] = {p.name: p for p in params}
        suggested: set[str] = set()
        for k in kwargs:
            if k.name == "<positional>":
                problems.append(Diagnostic("positional argument after a keyword argument", k.span, "error",
                                           "put positional arguments first"))
        real_kwargs = [k for k in kwargs if k.name != "<positional>"]
        if len(args) > len(positional):
            n = len(positional)
            problems.append(Diagnostic(
                f"{what} takes {n} positional argument{'s' if n != 1 else ''}, got {len(args)}",
                args[n].span, "error",
                ("arguments: " + ", ".join(p.name for p in positional)) if positional else f"{what} takes no arguments"))
        for p, a in zip(positional, args):
            values[p.name], spans[p.name] = a, a.span
        for k in real_kwargs:
            found = by_name.get(k.name)
            if found is None:
                hint = did_you_mean(k.name, by_name)
                if hint:
                    suggested.add(hint.split("`")[1])
                names = ", ".join(by_name) or "none"
                problems.append(Diagnostic(f"{what} has no argument `{k.name}`", _head(k.span, len(k.name)), "error",
                                           hint or f"its arguments are: {names}"))
                continue
            if found.inferred and not allow_inferred_kw:
                continue
            if k.name in values:
                problems.append(Diagnostic(f"`{k.name}` is given twice", _head(k.span, len(k.name)), "error"))
                continue
            values[k.name], spans[k.name] = k.value, k.span
        out: dict[str, Any] = {}
        for name, e in values.items():
            p = by_name[name]
            try:
                v = evaluate(e, env)
            except NetspecError as err:
                problems.extend(err.diagnostics)
                continue
            if isinstance(v, float) and "int" in p.type.split("|") and "float" not in p.type and v.is_integer() \
                    and isinstance(e, ir.BinOp):
                v = int(v)  # `c / 2` in a block body
            if not type_ok(v, p.type):
                problems.append(Diagnostic(f"`{name}` of {what} must be {describe_type(p.type)}, got {show(v)}",
                                           spans[name], "error"))
                continue
            out[name] = v
        for p in params:
            if p.name not in out and p.default is cat.REQUIRED and not p.inferred and p.name not in suggested and \
                    not any(d.message.startswith(f"`{p.name}`") for d in problems):
                if p.name in values:
                    continue
                sig = ", ".join(q.name for q in positional if q.default is cat.REQUIRED)
                problems.append(Diagnostic(f"{what} needs `{p.name}`", call.span, "error",
                                           f"write {what}({sig})" if sig else None))
        return out, spans, problems

    # ------------------------------------------------------------ model

    def check_model(self, m: ir.Model) -> ir.CheckedModel | None:
        settings: dict[str, ir.Setting] = {}
        for s in m.settings:
            if s.key in settings:
                self.err(s.key_span, f"duplicate `{s.key}:`")
            settings[s.key] = s
        input_shape = self.input_shape(m, settings.get("input"))
        init = None
        if "init" in settings:
            init = self.init_spec(settings["init"].value, self.consts)
        if input_shape is None:
            return None
        root, out = self.sequence(m.layers, input_shape, self.consts, m.name, "sequential", m.span, ())
        return ir.CheckedModel(m.name, input_shape, root, init, m.span)

    def input_shape(self, m: ir.Model, s: ir.Setting | None) -> ir.Shape | None:
        if s is None:
            self.err(_head(m.span, 5 + 1 + len(m.name)), f"model `{m.name}` has no `input:`",
                     "add the per-sample input shape as the first entry, e.g. `input: [784]` or `input: [1, 28, 28]`")
            return None
        try:
            v = evaluate(s.value, {**self.consts, "_": None})
        except NetspecError as e:
            self.absorb(e)
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v,)
        if not isinstance(v, tuple) or not v or not all(d is None or (type_ok(d, "int") and d > 0) for d in v):
            self.err(s.value.span, f"`input` must be a list of positive sizes (or `_`), got {show(v)}",
                     "e.g. `input: [1, 28, 28]`; the batch dimension is implicit")
            return None
        return tuple(v)

    def init_spec(self, e: ir.Expr, env: Mapping[str, Any]) -> ir.InitSpec | None:
        name = e.name if isinstance(e, ir.Ref) else e.func if isinstance(e, ir.Call) else None
        if name is None:
            self.err(e.span, f"expected an initialiser, got `{source(e)}`",
                     "initialisers: " + ", ".join(cat.INITIALISERS))
            return None
        spec = cat.INITIALISERS.get(name)
        if spec is None:
            self.err(getattr(e, "name_span", None) or e.span, f"unknown initialiser `{name}`",
                     did_you_mean(name, cat.INITIALISERS) or "initialisers: " + ", ".join(cat.INITIALISERS))
            return None
        values, _, problems = self.bind(name, spec.params, spec.params, e, env)
        if problems:
            self.diags.extend(problems)
            return None
        full = {p.name: values.get(p.name, p.default) for p in spec.params}
        return ir.InitSpec(name, tuple(full.items()), e.span)

    def sequence(self, entries: tuple[ir.Entry, ...], shape: ir.Shape | None, env: Mapping[str, Any],
                 name: str, kind: str, span: Span, trail: tuple[tuple[str, Span], ...]) -> tuple[ir.SeqNode, ir.Shape | None]:
        """Check a list of entries as one Sequential scope (names unique within it)."""
        expanded = self.expand_repeats(entries, env)
        explicit: dict[str, Span] = {}
        for e, auto in expanded:
            if isinstance(e, ir.Setting):
                self.err(e.key_span, f"`{e.key}:` belongs at the top of the model, not inside a block or repeat"
                         if e.key in ("input", "init") else f"unexpected `{e.key}:`")
                continue
            if e.name is not None and not auto:
                self.check_name(e.name, e.span, explicit)
        taken = set(explicit)
        children: list[ir.LayerNode | ir.SeqNode] = []
        in_shape = shape
        for e, auto in expanded:
            if isinstance(e, ir.Setting):
                continue
            base = e.name if (auto and e.name) else None
            if e.name is None or auto:
                stem = base or self.auto_stem(e)
                n = 1
                while f"{stem}{n}" in taken:
                    n += 1
                layer_name = f"{stem}{n}"
                taken.add(layer_name)
            else:
                layer_name = e.name
            node, shape = self.entry(e, layer_name, shape, env, trail)
            if node is not None:
                children.append(node)
        seq = ir.SeqNode(name, kind, tuple(children), in_shape or (), shape or (), span)
        return seq, shape

    def check_name(self, name: str, span: Span, seen: dict[str, Span]) -> None:
        head = _head(span, len(name))
        if name in seen:
            self.err(head, f"duplicate layer name `{name}`",
                     "layer names must be unique within a model or block",
                     [Diagnostic(f"`{name}` first used here", seen[name], "note")])
            return
        if name in RESERVED_NAMES or name.startswith("_"):
            self.err(head, f"`{name}` cannot be a layer name: it is an attribute of torch.nn.Module",
                     f"rename it, e.g. `{name.strip('_')}_layer`")
        seen[name] = head

    def auto_stem(self, e: ir.Entry) -> str:
        if isinstance(e, ir.Residual):
            return "residual"
        if isinstance(e, ir.Repeat):
            return "repeat"
        assert isinstance(e, ir.Layer)
        x = e.expr
        if isinstance(x, ir.Ref):
            return x.name.lower()
        if isinstance(x, ir.Call):
            return x.func.lower()
        return "layer"

    def expand_repeats(self, entries: tuple[ir.Entry, ...], env: Mapping[str, Any]) -> list[tuple[ir.Entry, bool]]:
        """Unnamed `repeat N { ... }` expands in place; its entries are auto-named with counters."""
        out: list[tuple[ir.Entry, bool]] = []
        for e in entries:
            if isinstance(e, ir.Repeat) and e.name is None:
                n = self.repeat_count(e, env)
                for _ in range(n):
                    out.extend((x, True) for x, _auto in self.expand_repeats(e.body, env))
            else:
                out.append((e, False))
        return out

    def repeat_count(self, e: ir.Repeat, env: Mapping[str, Any]) -> int:
        try:
            n = evaluate(e.count, env)
        except NetspecError as err:
            self.absorb(err)
            return 0
        if not type_ok(n, "int") or n < 1:
            self.err(e.count.span, f"repeat count must be a positive integer, got {show(n)}")
            return 0
        if n * max(len(e.body), 1) > MAX_LAYERS:
            self.err(e.count.span, f"repeat {n} would create more than {MAX_LAYERS} layers")
            return 0
        return n

    def entry(self, e: ir.Entry, name: str, shape: ir.Shape | None, env: Mapping[str, Any],
              trail: tuple[tuple[str, Span], ...]) -> tuple[ir.LayerNode | ir.SeqNode | None, ir.Shape | None]:
        self.layer_count += 1
        if self.layer_count > MAX_LAYERS:
            if self.layer_count == MAX_LAYERS + 1:
                self.err(e.span, f"the model expands to more than {MAX_LAYERS} layers")
            return None, None
        if isinstance(e, ir.Repeat):  # named repeat: a nested Sequential
            n = self.repeat_count(e, env)
            body = tuple(x for _ in range(n) for x in e.body)
            return self.sequence(body, shape, env, name, "sequential", e.span, trail)
        if isinstance(e, ir.Residual):
            seq, out = self.sequence(e.body, shape, env, name, "residual", e.span, trail)
            if shape is not None and out is not None and tuple(out) != tuple(shape):
                self.err(_head(e.span, len(e.name or "") + 2 + 8 if e.name else 8),
                         f"residual body changes the shape from {fmt_shape(shape)} to {fmt_shape(out)}; "
                         "x + f(x) needs f to keep it",
                         "make the body's last layer produce " + fmt_shape(shape), self.trail_notes(trail))
                return seq, shape
            return seq, out
        assert isinstance(e, ir.Layer)
        x = e.expr
        if isinstance(x, ir.Ref):
            type_name, type_span = x.name, x.span
        elif isinstance(x, ir.Call):
            type_name, type_span = x.func, x.name_span
        else:
            self.err(x.span, f"expected a layer, got `{source(x)}`", "a layer is a type with optional arguments, e.g. Linear(10)")
            return None, None
        if type_name in self.blocks:
            return self.block_use(e, type_name, name, shape, env, trail)
        spec = cat.LAYERS.get(type_name)
        if spec is None:
            self.unknown_layer(type_name, type_span, trail)
            return None, None
        try:
            return self.layer(e, spec, name, shape, env, trail)
        except _Abort:
            return None, None

    def unknown_layer(self, type_name: str, span: Span, trail) -> None:
        candidates = [*cat.LAYERS, *self.blocks]
        hint = did_you_mean(type_name, candidates)
        if hint is None:
            for kind, table in (("loss", cat.LOSSES), ("optimizer", cat.OPTIMIZERS)):
                if type_name in table:
                    hint = f"`{type_name}` is a {kind}; it belongs in the train section"
        if hint is None and type_name in self.consts:
            hint = f"`{type_name}` is a constant (let), not a layer"
        self.err(span, f"unknown layer `{type_name}`", hint or "run `netspec layers` to list the layers",
                 self.trail_notes(trail))

    def trail_notes(self, trail) -> list[Diagnostic]:
        return [Diagnostic(f"in block `{b}` used here", s, "note") for b, s in reversed(trail)]

    def block_use(self, e: ir.Layer, block_name: str, name: str, shape, env, trail):
        block = self.blocks[block_name]
        use_span = e.expr.span
        def_note = Diagnostic(f"block `{block_name}` defined here", _head(block.span, 6 + len(block_name)), "note")
        if any(b == block_name for b, _ in trail):
            chain = " -> ".join([*(b for b, _ in trail), block_name])
            self.err(use_span, f"block `{block_name}` uses itself ({chain})", "blocks cannot be recursive", [def_note])
            return None, None
        if e.inits:
            self.err(e.inits[0].span, "`with` initialisers apply to layers, not to block uses",
                     "put `with` on the layers inside the block, or use model-wide `init:`")
        params = tuple(P(p.name, "any", cat.REQUIRED if p.default is None else p.default) for p in block.params)
        call = e.expr if isinstance(e.expr, ir.Call) else ir.Call(block_name, (), (), e.expr.span)
        args, kwargs = call.args, [k for k in call.kwargs if k.name != "<positional>"]
        problems: list[Diagnostic] = []
        if len(args) > len(params):
            need = sum(1 for p in block.params if p.default is None)
            rng = str(len(params)) if need == len(params) else f"{need} to {len(params)}"
            problems.append(Diagnostic(f"block `{block_name}` takes {rng} argument{'s' if len(params) != 1 else ''}, "
                                       f"got {len(args)}", use_span, "error",
                                       f"parameters: ({', '.join(p.name for p in block.params)})", (def_note,)))
        bound: dict[str, Any] = {}
        for p, a in zip(block.params, args):
            try:
                bound[p.name] = evaluate(a, env)
            except NetspecError as err:
                problems.extend(err.diagnostics)
        names = [p.name for p in block.params]
        for k in kwargs:
            if k.name not in names:
                problems.append(Diagnostic(f"block `{block_name}` has no parameter `{k.name}`", _head(k.span, len(k.name)),
                                           "error", did_you_mean(k.name, names) or f"parameters: ({', '.join(names)})",
                                           (def_note,)))
            elif k.name in bound:
                problems.append(Diagnostic(f"`{k.name}` is given twice", _head(k.span, len(k.name)), "error"))
            else:
                try:
                    bound[k.name] = evaluate(k.value, env)
                except NetspecError as err:
                    problems.extend(err.diagnostics)
        scope = dict(self.consts)
        for p in block.params:
            if p.name not in bound:
                if p.default is None:
                    problems.append(Diagnostic(f"block `{block_name}` needs `{p.name}`", use_span, "error",
                                               f"write {block_name}({', '.join(names)})", (def_note,)))
                    continue
                try:
                    bound[p.name] = evaluate(p.default, {**scope, **bound})
                except NetspecError as err:
                    problems.extend(err.diagnostics)
            scope[p.name] = bound.get(p.name)
        if problems:
            self.diags.extend(problems)
            return None, None
        return self.sequence(block.body, shape, {**self.consts, **bound}, name, "sequential", e.span,
                             (*trail, (block_name, use_span)))

    def layer(self, e: ir.Layer, spec: cat.LayerSpec, name: str, shape, env, trail):
        call = e.expr
        what = spec.name
        notes = self.trail_notes(trail)
        values, spans, problems = self.bind(what, spec.params, spec.user_params, call, env)
        if spec.int_input and self.layers_made:
            self.err(call.span, f"{what} must be the first layer of the model: it takes integer token ids",
                     None, notes)
            raise _Abort
        self.layers_made += 1
        if problems:
            torch_style = self.torch_style(e, spec, shape, env, name)
            if torch_style is not None:
                self.diags.append(replace(torch_style, notes=tuple(notes)))
            else:
                self.diags.extend(replace(p, notes=p.notes + tuple(notes)) for p in problems)
            raise _Abort
        inits = self.layer_inits(e, spec, env)
        if shape is None:
            return None, None  # an earlier layer failed; do not cascade
        args = {p.name: values.get(p.name, p.default) for p in spec.params if not p.inferred}
        args.update({k: v for k, v in values.items()})
        try:
            out = self.apply_shape(spec, shape, args, spans)
        except ShapeError as se:
            torch_style = self.torch_style(e, spec, shape, env, name)
            if torch_style is not None:
                self.diags.append(replace(torch_style, notes=tuple(notes)))
            else:
                self.err(call.span, f"{what}: {se.message}" if not se.message.startswith(what) else se.message,
                         se.help, notes)
            return None, None
        full = tuple((p.name, args.get(p.name, p.default)) for p in spec.params) + spec.fixed
        if self.target == "onnx":
            problem = cat.onnx_problem(spec.name, dict(full), shape)
            if problem:
                self.err(call.span, f"cannot export to ONNX: {problem}", None, notes)
        if inits:
            names = [n for n, _ in cat.parameter_shapes(spec.name, dict(full))]
            for key, init in inits:
                if not any(n == key or n.startswith(key + "_") for n in names):
                    have = ", ".join(sorted({n.split("_")[0] for n in names})) or "none"
                    self.err(init.span, f"{what} has no `{key}` parameter to initialise (parameters: {have})")
                else:
                    spec_i = cat.INITIALISERS[init.name]
                    if spec_i.matrix_only and all(len(s) < 2 for n, s in cat.parameter_shapes(spec.name, dict(full))
                                                  if n == key or n.startswith(key + "_")):
                        self.err(init.span, f"`{init.name}` needs a weight with at least 2 dimensions; "
                                 f"{what}'s `{key}` has 1", "use normal, uniform, constant, zeros or ones")
        return ir.LayerNode(name, spec.name, full, tuple(shape), tuple(out), tuple(inits), e.span), tuple(out)

    def apply_shape(self, spec: cat.LayerSpec, shape: ir.Shape, args: dict, spans: dict) -> ir.Shape:
        if spec.ranks is not None and len(shape) not in spec.ranks:
            raise ShapeError(f"{spec.name} expects {spec.expects}, got {fmt_shape(shape)}", self.rank_help(spec, shape))
        if spec.infer is not None:
            inferred = spec.infer(shape, args)
            for k, v in inferred.items():
                if k.startswith("__"):
                    continue
                given = args.get(k)
                if given is not None and k in spans and _norm(given) != _norm(v):
                    raise ShapeError(f"`{k}={show(given)}` does not match the incoming shape {fmt_shape(shape)}, "
                                     f"which gives {k}={show(v)}",
                                     f"remove `{k}=`: it is inferred from the incoming shape")
                args[k] = v
        return tuple(spec.shape(shape, args))

    def rank_help(self, spec: cat.LayerSpec, shape: ir.Shape) -> str | None:
        want = min(spec.ranks or (1,))
        if len(shape) > max(spec.ranks or (1,)) and max(spec.ranks or (1,)) <= 2 and spec.category != "recurrent":
            return "insert Flatten before this layer"
        if want >= 2 and len(shape) == 1:
            n = shape[0]
            if spec.category == "recurrent" or spec.name == "Last":
                return f"sequence layers take [steps, features]; e.g. `input: [_, {n}]`"
            if n is not None and want == 3 and math.isqrt(n) ** 2 == n:
                r = math.isqrt(n)
                return f"insert Reshape([1, {r}, {r}]) before this layer, or set `input: [1, {r}, {r}]`"
            return f"insert Reshape([...]) before this layer to give it {spec.expects}"
        if spec.name == "Last":
            return "Last follows a recurrent layer (RNN, LSTM, GRU)"
        return None

    def torch_style(self, e: ir.Layer, spec: cat.LayerSpec, shape, env, name: str) -> Diagnostic | None:
        """`Linear(784, 128)`: the inferred argument written positionally, the PyTorch way."""
        call = e.expr
        inferred = [p for p in spec.params if p.inferred]
        if not inferred or not isinstance(call, ir.Call) or len(call.args) < 2:
            return None
        values, _, problems = self.bind(spec.name, spec.params, spec.params, call, env)
        if problems:
            return None
        k = max(i for i, p in enumerate(spec.params) if p.inferred) + 1
        if len(call.args) < k + 1 and not any(p.default is cat.REQUIRED for p in spec.user_params):
            return None
        drop = {i for i, p in enumerate(spec.params) if p.inferred and i < len(call.args)}
        kept = [a for i, a in enumerate(call.args) if i not in drop]
        fixed = ir.Call(call.func, tuple(kept), call.kwargs)
        line = (f"{e.name}: " if e.name else "") + source(fixed)
        names = " and ".join(f"`{p.name}`" for p in inferred)
        actual = ""
        if shape is not None and spec.infer is not None:
            try:
                got = spec.infer(shape, {})
                actual = " (here " + ", ".join(f"{k2}={show(v)}" for k2, v in got.items() if not k2.startswith("__")) + ")"
            except ShapeError:
                pass
        return Diagnostic(
            f"{spec.name}'s {names} {'is' if len(inferred) == 1 else 'are'} inferred from the incoming shape"
            f"{actual}; do not write {'it' if len(inferred) == 1 else 'them'} positionally",
            call.span, "error", f"write `{line}`")

    def layer_inits(self, e: ir.Layer, spec: cat.LayerSpec, env) -> list[tuple[str, ir.InitSpec]]:
        out = []
        for k in e.inits:
            if spec.weights is None:
                self.err(k.span, f"{spec.name} has no parameters to initialise")
                continue
            init = self.init_spec(k.value, env)
            if init is not None:
                out.append((k.name, replace(init, span=k.span)))
        return out

    # ------------------------------------------------------------ sections

    def settings(self, section: ir.Section, table: list[cat.SettingSpec]) -> dict[str, ir.Setting]:
        known = {s.key: s for s in table}
        out: dict[str, ir.Setting] = {}
        for e in section.entries:
            if not isinstance(e, ir.Setting):
                self.err(e.span, f"the {section.kind} section holds `key: value` entries",
                         "keys: " + ", ".join(known))
                continue
            if e.key not in known:
                self.err(e.key_span, f"unknown key `{e.key}` in {section.kind}",
                         did_you_mean(e.key, known) or "keys: " + ", ".join(known))
                continue
            if e.key in out:
                self.err(e.key_span, f"duplicate key `{e.key}`",
                         notes=[Diagnostic("first given here", out[e.key].key_span, "note")])
                continue
            out[e.key] = e
        return out

    def value(self, s: ir.Setting, t: str, default: Any = None) -> Any:
        try:
            v = evaluate(s.value, self.consts, symbols=True)
        except NetspecError as e:
            self.absorb(e)
            return default
        if isinstance(v, ir.Symbol):
            if v.name in ("full",) and "choice(full)" in t:
                return v.name
            if "choice(" in t and type_ok(v.name, t):
                return v.name
            if t == "str":
                return v.name
            self.err(s.value.span, f"unknown name `{v.name}`", did_you_mean(v.name, self.consts))
            return default
        if isinstance(v, float) and v.is_integer() and t.startswith("int"):
            v = int(v)
        if not type_ok(v, t):
            self.err(s.value.span, f"`{s.key}` must be {describe_type(t)}, got {show(v)}")
            return default
        return v

    def call_value(self, e: ir.Expr, table: Mapping[str, Any], kind: str, params_of=lambda spec: spec.params) -> ir.CallValue | None:
        name = e.name if isinstance(e, ir.Ref) else e.func if isinstance(e, ir.Call) else None
        if name is None:
            self.err(e.span, f"expected a {kind}, got `{source(e)}`")
            return None
        spec = table.get(name)
        if spec is None:
            hint = did_you_mean(name, table) or f"{kind}s: " + ", ".join(table)
            if kind != "layer" and name in cat.LAYERS:
                hint = f"`{name}` is a layer; it belongs in the model"
            self.err(getattr(e, "name_span", None) or e.span, f"unknown {kind} `{name}`", hint)
            return None
        params = params_of(spec)
        values, _, problems = self.bind(name, params, params, e, self.consts)
        if problems:
            self.diags.extend(problems)
            return None
        return ir.CallValue(name, tuple(values.items()), e.span)

    def check_data(self, section: ir.Section | None) -> ir.DataConfig | None:
        if section is None:
            return None
        s = self.settings(section, cat.DATA_SETTINGS)
        cfg: dict[str, Any] = {"span": section.span}
        for key in ("train", "test"):
            if key in s:
                cfg[key] = self.source(s[key])
        simple = {"validation": "float", "normalize": "choice(standard,minmax,none)", "batch_size": "int|choice(full)",
                  "shuffle": "bool", "one_hot": "bool", "target_type": "choice(auto,class,value)", "subset": "int?"}
        for key, t in simple.items():
            if key in s:
                cfg[key] = self.value(s[key], t, getattr(ir.DataConfig(), key))
        if cfg.get("batch_size") == "full":
            cfg["batch_size"] = None
        elif "batch_size" in cfg and cfg["batch_size"] < 1:
            self.err(s["batch_size"].value.span, "batch_size must be at least 1 (or `full`)")
        if "validation" in cfg and not 0 <= cfg["validation"] < 1:
            self.err(s["validation"].value.span, f"validation must be a fraction in [0, 1), got {cfg['validation']}")
        if "split" in s:
            v = self.value(s["split"], "floats")
            if isinstance(v, tuple):
                if len(v) != 3 or any(x < 0 for x in v) or abs(sum(v) - 1) > 1e-6:
                    self.err(s["split"].value.span, f"split must be three fractions [train, validation, test] "
                             f"adding up to 1, got {show(v)}")
                else:
                    cfg["split"] = v
            if "test" in cfg:
                self.err(s["split"].key_span, "`split` divides one source; do not give `test:` as well")
        if "labels" in s:
            v = self.value(s["labels"], "any")
            if isinstance(v, tuple) and all(isinstance(x, (str, int)) for x in v):
                cfg["labels"] = tuple(str(x) for x in v)
            else:
                self.err(s["labels"].value.span, "labels must be a list of class names")
        if "train" not in s:
            self.err(_head(section.span, 4), "the data section needs a `train:` source",
                     'e.g. `train: mnist(split="train")`')
        return ir.DataConfig(**cfg)

    def source(self, s: ir.Setting) -> ir.Source | None:
        e = s.value
        name = e.func if isinstance(e, ir.Call) else e.name if isinstance(e, ir.Ref) else None
        if name is None or name not in cat.SOURCES:
            shown = name or source(e)
            self.err(getattr(e, "name_span", None) or e.span, f"unknown data source `{shown}`",
                     did_you_mean(shown, cat.SOURCES) or "sources: " + ", ".join(cat.SOURCES))
            return None
        spec = cat.SOURCES[name]
        if name == "table":
            return self.table_source(e, spec)
        params = tuple(p for p in spec.params)
        values, _, problems = self.bind(name, params, params, e, self.consts)
        if problems:
            self.diags.extend(problems)
            return None
        if name == "csv":
            for key in ("features", "categorical"):
                v = values.get(key)
                if v is not None and not (isinstance(v, tuple) and all(isinstance(x, str) for x in v)):
                    self.err(e.span, f"`{key}` of csv must be a list of column names")
        full = {p.name: values.get(p.name, None if p.default is cat.REQUIRED else p.default) for p in params}
        if name in ("mnist", "fashion_mnist") and "split" not in values:
            full["split"] = s.key if s.key in ("train", "test") else "train"
        full = _resolve_paths(full, name, self.spec.file)
        return ir.Source(name, tuple(full.items()), e.span)

    def table_source(self, e: ir.Expr, spec: cat.SourceSpec) -> ir.Source | None:
        if not isinstance(e, ir.Call):
            self.err(e.span, "table needs columns: table(x=..., y=...)")
            return None
        cols: dict[str, ir.Expr] = {}
        for a in e.args:
            self.err(a.span, "table columns are named: table(x=..., y=...)")
        for k in e.kwargs:
            if k.name not in ("x", "y"):
                self.err(_head(k.span, len(k.name)), f"table has no column `{k.name}`",
                         "columns: x (inputs) and y (targets)")
                continue
            for problem in validate_table(k.value, self.consts, set(cols)):
                self.absorb(problem)
            cols[k.name] = k.value
        for need in ("x", "y"):
            if need not in cols and not any(k.name == need for k in e.kwargs):
                self.err(e.span, f"table needs a `{need}=` column")
        return ir.Source("table", tuple(cols.items()), e.span)

    def check_train(self, section: ir.Section | None) -> ir.TrainConfig:
        if section is None:
            return ir.TrainConfig()
        s = self.settings(section, cat.TRAIN_SETTINGS)
        cfg: dict[str, Any] = {"span": section.span}
        if "loss" in s:
            cfg["loss"] = self.call_value(s["loss"].value, cat.LOSSES, "loss") or ir.TrainConfig().loss
            ls = cat.LOSSES.get(cfg["loss"].name)
            if ls is not None and ls.target == "unsupported":
                self.err(s["loss"].value.span, f"{ls.name} cannot be trained by netspec's loop: it {ls.doc}",
                         "the loop calls loss(model(x), y); choose a loss with one input and a target")
        if "optimizer" in s:
            cfg["optimizer"] = self.call_value(s["optimizer"].value, cat.OPTIMIZERS, "optimizer") or ir.TrainConfig().optimizer
        if "scheduler" in s and not isinstance(s["scheduler"].value, ir.NoneLit):
            cfg["scheduler"] = self.call_value(s["scheduler"].value, cat.SCHEDULERS, "scheduler")
        if "metrics" in s:
            v = s["metrics"].value
            items = v.items if isinstance(v, ir.ListLit) else (v,)
            cfg["metrics"] = tuple(m for m in (self.call_value(i, cat.METRICS, "metric") for i in items) if m)
        if "early_stopping" in s and not isinstance(s["early_stopping"].value, ir.NoneLit):
            cfg["early_stopping"] = self.call_value(s["early_stopping"].value, {"EarlyStopping": cat.EARLY_STOPPING},
                                                    "early-stopping rule", lambda params: params)
        simple = {"epochs": "int", "l1": "float", "clip_grad_norm": "float?", "seed": "int", "device": "str",
                  "checkpoint_every": "int", "save": "choice(best,last)"}
        for key, t in simple.items():
            if key in s:
                cfg[key] = self.value(s[key], t, getattr(ir.TrainConfig(), key))
        if cfg.get("epochs", 1) < 1:
            self.err(s["epochs"].value.span, "epochs must be at least 1")
        if cfg.get("checkpoint_every", 1) < 1:
            self.err(s["checkpoint_every"].value.span, "checkpoint_every must be at least 1")
        dev = cfg.get("device", "auto")
        if isinstance(dev, str) and not (dev in ("auto", "cpu", "cuda", "mps") or
                                         (dev.startswith("cuda:") and dev[5:].isdigit())):
            self.err(s["device"].value.span, f"unknown device `{dev}`", "devices: auto, cpu, cuda, cuda:N, mps")
        return ir.TrainConfig(**cfg)

    def check_export(self, section: ir.Section | None) -> ir.ExportConfig:
        if section is None:
            return ir.ExportConfig()
        s = self.settings(section, cat.EXPORT_SETTINGS)
        cfg: dict[str, Any] = {"span": section.span}
        for key, t in (("onnx", "str?"), ("opset", "int"), ("tolerance", "float")):
            if key in s:
                cfg[key] = self.value(s[key], t, getattr(ir.ExportConfig(), key))
        if "opset" in cfg and not 9 <= cfg["opset"] <= 23:
            self.err(s["opset"].value.span, f"opset must be between 9 and 23, got {cfg['opset']}")
        if cfg.get("onnx"):
            cfg["onnx"] = os.path.join(os.path.dirname(self.spec.file), cfg["onnx"])
        return ir.ExportConfig(**cfg)

    # ------------------------------------------------------------ lints across sections

    def cross_checks(self, model: ir.CheckedModel, data: ir.DataConfig | None, train: ir.TrainConfig,
                     sections: dict[str, ir.Section]) -> None:
        layers = list(_flat(model.root))
        last = layers[-1] if layers else None
        out = model.output_shape
        loss = train.loss.name
        loss_span = train.loss.span or train.span
        last_type = last.type if last else None
        if loss == "CrossEntropyLoss" and last_type in ("Softmax", "LogSoftmax"):
            self.warn(last.span if last else loss_span, f"CrossEntropyLoss after {last_type}: CrossEntropyLoss applies log-softmax itself",
                      f"remove the {last_type} layer and train on logits")
        if loss == "NLLLoss" and last_type != "LogSoftmax":
            self.warn(loss_span, "NLLLoss expects log-probabilities, but the model does not end in LogSoftmax",
                      "add LogSoftmax as the last layer, or use CrossEntropyLoss on logits")
        if loss == "BCELoss" and last_type != "Sigmoid":
            self.warn(loss_span, "BCELoss expects probabilities, but the model does not end in Sigmoid",
                      "add Sigmoid as the last layer, or use BCEWithLogitsLoss")
        if loss == "BCEWithLogitsLoss" and last_type == "Sigmoid":
            self.warn(last.span if last else loss_span, "BCEWithLogitsLoss after Sigmoid applies the sigmoid twice",
                      "remove the Sigmoid layer")
        spec_loss = cat.LOSSES.get(loss)
        if spec_loss is not None and spec_loss.target == "class" and train.span and len(out) != 1:
            where = last.span if last else model.span
            self.err(where, f"{loss} needs the model to output [classes], but it outputs {fmt_shape(out)}",
                     "add Last after a recurrent layer, or Flatten, so each sample gives one row of class scores")
        one_hot = data is not None and data.one_hot
        value_targets = data is not None and data.target_type == "value"
        for m in train.metrics:
            metric = cat.METRICS[m.name]
            if metric.task == "value" and spec_loss is not None and spec_loss.target == "class" \
                    and not (one_hot or value_targets):
                self.err(m.span, f"`{m.name}` compares values, but {loss} trains on class indices",
                         "use accuracy or top_k(k) for classifiers")
            if m.name == "top_k" and out and out[-1] is not None and int(m.get("k", 5)) > out[-1]:
                self.err(m.span, f"top_k({m.get('k')}) needs at least {m.get('k')} classes; the model outputs "
                         f"{fmt_shape(out)}")
        if data is None or data.train is None:
            return
        kind = data.train.kind
        if kind in DATASETS and model.input_shape and None not in model.input_shape:
            want = DATASETS[kind].sample_shape
            if _elements(model.input_shape) != _elements(want):
                self.err(model.span if not model.span else _head(model.span, 5),
                         f"{kind} samples are {fmt_shape(want)} ({math.prod(want)} values) but the model input is "
                         f"{fmt_shape(model.input_shape)}", f"set `input: {fmt_shape(want)}` or `input: [{math.prod(want)}]`")
        classes = len(DATASETS[kind].labels) if kind in DATASETS else None
        spec = cat.LOSSES.get(loss)
        if classes and spec is not None and spec.target == "class" and out and out[-1] is not None:
            if out != (classes,):
                where = last.span if last else model.span
                self.err(where, f"the model outputs {fmt_shape(out)} but {kind} has {classes} classes",
                         f"make the last layer produce {classes} values, e.g. Linear({classes})")
        if (classes or kind == "idx") and loss in ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss") \
                and not data.one_hot and data.target_type != "value":
            self.warn(loss_span, f"{loss} with class-index targets from {kind}",
                      "set `one_hot: true` in the data section, or use CrossEntropyLoss")


# ---------------------------------------------------------------- helpers


def _elements(shape: ir.Shape) -> int:
    """Number of values in a fully known shape."""
    return math.prod(int(d or 0) for d in shape)


def _norm(v: object) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) if isinstance(v, int) else v


def _head(span: Span, width: int) -> Span:
    """The first `width` columns of a span (a keyword and name), for a tight caret."""
    if not span:
        return span
    return Span(span.file, span.line, span.column, span.line, span.column + max(width, 1))


def _flat(seq: ir.SeqNode) -> Iterable[ir.LayerNode]:
    for c in seq.children:
        if isinstance(c, ir.SeqNode):
            yield from _flat(c)
        else:
            yield c


def _resolve_paths(values: dict, kind: str, spec_file: str) -> dict:
    """File arguments are relative to the spec's folder."""
    base = os.path.dirname(spec_file)
    out = dict(values)
    for key in ("images", "labels", "path", "root"):
        v = out.get(key)
        if isinstance(v, str) and v and not os.path.isabs(v):
            out[key] = os.path.normpath(os.path.join(base, os.path.expanduser(v)))
    return out


def flat_layers(model: ir.CheckedModel) -> list[ir.LayerNode]:
    return list(_flat(model.root))


def parameter_count(node: ir.LayerNode | ir.SeqNode) -> int:
    if isinstance(node, ir.SeqNode):
        return sum(parameter_count(c) for c in node.children)
    return sum(math.prod(s) for _, s in cat.parameter_shapes(node.type, dict(node.kwargs)))


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


def check(spec: ir.Spec, *, target: str | None = None) -> ir.CheckedSpec:
    """Check a parsed spec; raises NetspecError with every error found."""
    try:
        return Checker(spec, target).run()
    except RecursionError:
        raise NetspecError.at(Span(spec.file, 1, 1, 1, 2), "spec is nested too deeply") from None
