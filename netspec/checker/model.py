"""Checker, part 2: the model. Names, blocks, repeats, branches, layers and shapes.

In: ``ir.Model`` (and the blocks and constants gathered by check.py).
Out: ``ir.CheckedModel``: a tree of ``SeqNode`` / ``BranchNode`` / ``LayerNode`` with every
constructor argument (inferred ones filled in) and the input and output shape of every
node; diagnostics for everything wrong, each at its own line and column (with the chain of
block uses that led there).

Shapes are per sample (the batch axis is implicit); ``None`` is a variable `_` dimension.
Checking is linear in the number of layers, and bounded: a model may expand to at most
``MAX_LAYERS`` layers, and the bound is checked before nested repeats are expanded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import P, ShapeError, fmt_shape, type_ok
from netspec.checker.context import CheckContext, head
from netspec.errors import Diagnostic, NetspecError, Span, did_you_mean, with_article
from netspec.syntax.expr import evaluate, show, source

# attributes of nn.Module: add_module refuses them as child names
RESERVED_NAMES = frozenset(
    "T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu cuda "
    "double dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter "
    "get_submodule half insert ipu load_state_dict modules mtia named_buffers named_children named_modules "
    "named_parameters parameters pop register_backward_hook register_buffer register_forward_hook "
    "register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook "
    "register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module "
    "register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ "
    "set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu zero_grad "
    "outputs dim".split()
)
MAX_LAYERS = 20_000

Trail = tuple[tuple[str, Span], ...]
Shape = ir.Shape


class _Abort(Exception):
    """Stop checking the current layer; its diagnostic is already recorded."""


class ModelChecker:
    """A pass over one ``CheckContext``: it reports through the context and reads its
    constants and blocks; it holds only its own bookkeeping."""

    def __init__(self, ctx: CheckContext):
        self.ctx = ctx
        self.layer_count = 0
        self.layers_made = 0
        self.branch_depth = 0
        self.reported: set = set()

    # ------------------------------------------------------------ model

    def check_model(self, m: ir.Model) -> ir.CheckedModel | None:
        settings: dict[str, ir.Setting] = {}
        for s in m.settings:
            if s.key in settings:
                self.ctx.err(s.key_span, f"duplicate `{s.key}:`")
            settings[s.key] = s
        input_shape = self.input_shape(m, settings.get("input"))
        init = None
        if "init" in settings:
            init = self.ctx.init_spec(settings["init"].value, self.ctx.consts)
        if input_shape is None:
            return None
        if self.expanded_size(m.layers, self.ctx.consts) > MAX_LAYERS:
            self.ctx.err(head(m.span, 5), f"the model expands to more than {MAX_LAYERS:,} layers",
                     "lower the repeat counts")
            return None
        # the model's input is the caller's tensor: no layer may change it in place
        root, _out, _shared = self.sequence(m.layers, input_shape, self.ctx.consts, m.name, "sequential", m.span, (),
                                            shared=True)
        return ir.CheckedModel(m.name, input_shape, root, init, m.span)

    def input_shape(self, m: ir.Model, s: ir.Setting | None) -> Shape | None:
        if s is None:
            self.ctx.err(head(m.span, 5 + 1 + len(m.name)), f"model `{m.name}` has no `input:`",
                     "add the per-sample input shape as the first entry, e.g. `input: [784]` or `input: [1, 28, 28]`")
            return None
        try:
            v = evaluate(s.value, {**self.ctx.consts, "_": None})
        except NetspecError as e:
            self.ctx.absorb(e)
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v,)
        if not isinstance(v, tuple) or not v or not all(d is None or (type_ok(d, "int") and d > 0) for d in v):
            self.ctx.err(s.value.span, f"`input` must be a list of positive sizes (or `_`), got {show(v)}",
                     "e.g. `input: [1, 28, 28]`; the batch dimension is implicit")
            return None
        if None not in v and math.prod(v) > 1 << 40:
            self.ctx.err(s.value.span, f"`input` {fmt_shape(v)} has more than 2**40 values per sample")
            return None
        return tuple(v)

    # ------------------------------------------------------------ sequences and names

    def sequence(self, entries: tuple[ir.Entry, ...], shape: Shape | None, env: Mapping[str, Any], name: str,
                 kind: str, span: Span, trail: Trail, shared: bool,
                 stems: bool = False) -> tuple[ir.SeqNode, Shape | None, bool]:
        """One Sequential scope: names unique within it. `shared`: the incoming tensor is also
        read elsewhere (another branch, the caller), so nothing may change it in place.
        `stems`: the entries are a repeat body, so their names are stems (`fc` -> fc1, fc2)."""
        expanded = self.expand_repeats(entries, env, stems, trail)
        explicit: dict[str, Span] = {}
        for e, auto in expanded:
            if isinstance(e, ir.Setting):
                self.ctx.err(e.key_span, f"`{e.key}:` belongs at the top of the model, not inside a block, repeat "
                         "or branch" if e.key in ("input", "init") else f"unexpected `{e.key}:`")
                continue
            if e.name is not None and "." in e.name:  # `a.b:` parses (a search key), but torch paths use dots
                self.ctx.err(head(e.span, len(e.name)), f"`{e.name}` cannot be a layer name: torch joins module "
                             "names with `.`", f"write it with `_`: `{e.name.replace('.', '_')}`")
                continue
            if e.name is not None and not auto:
                self.check_name(e.name, e.span, explicit)
        namer = _Namer(explicit)
        children: list[ir.Node] = []
        in_shape = shape
        for e, auto in expanded:
            if isinstance(e, ir.Setting):
                continue
            layer_name = namer.next(e.name or self.auto_stem(e)) if (e.name is None or auto) else e.name
            node, shape, shared = self.entry(e, layer_name, shape, env, trail, shared)
            if node is not None:
                children.append(node)
        seq = ir.SeqNode(name, kind, tuple(children), in_shape or (), shape or (), span)
        return seq, shape, shared

    def check_name(self, name: str, span: Span, seen: dict[str, Span]) -> None:
        where = head(span, len(name))
        if name in seen:
            self.ctx.err(where, f"duplicate layer name `{name}`",
                     "layer names must be unique within a model, block or branch",
                     [Diagnostic(f"`{name}` first used here", seen[name], "note")])
            return
        if name in RESERVED_NAMES or name.startswith("_"):
            self.ctx.err(where, f"`{name}` cannot be a layer name: it is an attribute of torch.nn.Module",
                     f"rename it, e.g. `{name.strip('_')}_layer`")
        seen[name] = where

    @staticmethod
    def auto_stem(e: ir.Entry) -> str:
        if isinstance(e, ir.Residual):
            return "residual"
        if isinstance(e, ir.Repeat):
            return "repeat"
        if isinstance(e, ir.Seq):
            return "sequential"
        if isinstance(e, ir.Branches):
            x = e.head
            return (x.name if isinstance(x, ir.Ref) else x.func if isinstance(x, ir.Call) else "branches").lower()
        if isinstance(e, ir.Layer) and isinstance(e.expr, ir.Ref):
            return e.expr.name.lower()
        if isinstance(e, ir.Layer) and isinstance(e.expr, ir.Call):
            return e.expr.func.lower()
        return "layer"

    # ------------------------------------------------------------ repeats

    def expand_repeats(self, entries: tuple[ir.Entry, ...], env: Mapping[str, Any],
                       stems: bool, trail: Trail = ()) -> list[tuple[ir.Entry, bool]]:
        """Unnamed `repeat N { ... }` expands in place; entries it produces (and every entry
        of a repeat body) are auto-named, their own names serving as stems. Never builds a
        list longer than MAX_LAYERS."""
        out: list[tuple[ir.Entry, bool]] = []
        for e in entries:
            if isinstance(e, ir.Repeat) and e.name is None:
                n = self.repeat_count(e, env, trail)
                body = self.expand_repeats(e.body, env, True, trail) if n else []
                if len(out) + n * len(body) > MAX_LAYERS:
                    self.report_once(e.count.span, f"repeat {n} would create more than {MAX_LAYERS:,} layers",
                                     "lower the repeat count", trail)
                    return out
                for _ in range(n):
                    out.extend((x, True) for x, _auto in body)
            else:
                out.append((e, stems))
        return out

    def report_once(self, span: Span, msg: str, help: str | None = None, trail: Trail = ()) -> None:
        """An error about a construct that is checked again for every use of its block
        (noted at the first use that triggers it)."""
        seen = self.reported
        if (span, msg) not in seen:
            seen.add((span, msg))
            self.ctx.err(span, msg, help, self.trail_notes(trail))

    def repeat_count(self, e: ir.Repeat, env: Mapping[str, Any], trail: Trail = ()) -> int:
        try:
            n = evaluate(e.count, env)
        except NetspecError as err:
            for d in err.diagnostics:
                self.report_once(d.span, d.message, d.help, trail)
            return 0
        if not type_ok(n, "int") or n < 0:
            self.report_once(e.count.span, f"repeat count must be a whole number >= 0, got {show(n)}", None, trail)
            return 0
        return n

    def expanded_size(self, entries: tuple[ir.Entry, ...], env: Mapping[str, Any], trail: Trail = ()) -> int:
        """How many entries a body expands to through its repeats (blocks count as one; the
        layer counter bounds them), stopping early once past MAX_LAYERS."""
        total = 0
        for e in entries:
            if isinstance(e, ir.Repeat):
                n = self.repeat_count(e, env, trail)
                inner = self.expanded_size(e.body, env, trail) if n else 0
                total += n * max(inner, 1)
            elif isinstance(e, (ir.Residual, ir.Seq, ir.Branches)):
                total += self.expanded_size(e.body, env, trail)
            else:
                total += 1
            if total > MAX_LAYERS:
                return total
        return total

    # ------------------------------------------------------------ one entry

    def entry(self, e: ir.Entry, name: str, shape: Shape | None, env: Mapping[str, Any], trail: Trail,
              shared: bool) -> tuple[ir.Node | None, Shape | None, bool]:
        self.layer_count += 1
        if self.layer_count > MAX_LAYERS:
            if self.layer_count == MAX_LAYERS + 1:
                self.ctx.err(e.span, f"the model expands to more than {MAX_LAYERS:,} layers", None,
                         self.trail_notes(trail))
            return None, None, shared
        if isinstance(e, ir.Repeat):  # a named repeat: a nested Sequential of the repeated body
            n = self.repeat_count(e, env, trail)
            if n and self.expanded_size(e.body, env, trail) * n > MAX_LAYERS:
                self.report_once(e.count.span, f"repeat {n} would create more than {MAX_LAYERS:,} layers",
                                 "lower the repeat count", trail)
                return None, None, shared
            body = tuple(x for _ in range(n) for x in e.body)
            return self.sequence(body, shape, env, name, "sequential", e.span, trail, shared, stems=True)
        if isinstance(e, ir.Seq):
            return self.sequence(e.body, shape, env, name, "sequential", e.span, trail, shared)
        if isinstance(e, ir.Residual):
            return self.residual(e, name, shape, env, trail)
        if isinstance(e, ir.Branches):
            return self.branches(e, name, shape, env, trail)
        assert isinstance(e, ir.Layer)
        x = e.expr
        if isinstance(x, ir.Ref):
            type_name, type_span = x.name, x.span
        elif isinstance(x, ir.Call):
            type_name, type_span = x.func, x.name_span
        else:
            self.ctx.err(x.span, f"expected a layer, got `{source(x)}`",
                     "a layer is a type with optional arguments, e.g. Linear(10)", self.trail_notes(trail))
            return None, None, shared
        if type_name in self.ctx.blocks:
            return self.block_use(e, type_name, name, shape, env, trail, shared)
        spec = cat.LAYERS.get(type_name)
        if spec is None:
            self.unknown_layer(type_name, type_span, trail)
            return None, None, shared
        try:
            return self.layer(e, spec, name, shape, env, trail, shared)
        except _Abort:
            return None, None, shared

    def unknown_layer(self, type_name: str, span: Span, trail: Trail) -> None:
        hint = did_you_mean(type_name, [*cat.LAYERS, *self.ctx.blocks])
        if hint is None:
            for kind, table in (("loss", cat.LOSSES), ("optimizer", cat.OPTIMIZERS),
                                ("augmentation", cat.AUGMENTS)):
                if type_name in table:
                    where = "the data section's `augment: [...]`" if kind == "augmentation" else "the train section"
                    hint = f"`{type_name}` is {with_article(kind)}; it belongs in {where}"
        if hint is None and type_name in cat.BRANCHES:
            hint = f"`{type_name}` takes branches: write `{type_name} {{ ...; ... }}`"
        if hint is None and type_name in self.ctx.consts:
            hint = f"`{type_name}` is a constant (let), not a layer"
        self.ctx.err(span, f"unknown layer `{type_name}`", hint or "run `netspec layers` to list the layers",
                 self.trail_notes(trail))

    @staticmethod
    def trail_notes(trail: Trail) -> list[Diagnostic]:
        return [Diagnostic(f"in block `{b}` used here", s, "note") for b, s in reversed(trail)]

    # ------------------------------------------------------------ residual and branches

    def residual(self, e: ir.Residual, name: str, shape: Shape | None, env: Mapping[str, Any],
                 trail: Trail) -> tuple[ir.Node | None, Shape | None, bool]:
        """`residual { f }`: x + f(x), i.e. add { f; Identity }; f reads x, which the sum reads too."""
        self.branch_depth += 1
        seq, out, _ = self.sequence(e.body, shape, env, name, "residual", e.span, trail, shared=True)
        self.branch_depth -= 1
        if shape is not None and out is not None and tuple(out) != tuple(shape):
            self.ctx.err(head(e.span, len(e.name) + 2 + 8 if e.name else 8),
                     f"residual body changes the shape from {fmt_shape(shape)} to {fmt_shape(out)}; "
                     "x + f(x) needs f to keep it",
                     "make the body's last layer produce " + fmt_shape(shape) +
                     ", or use `add { main: { ... }; shortcut: { ... } }` with a projection",
                     self.trail_notes(trail))
            return seq, shape, False
        return seq, out, False

    def branches(self, e: ir.Branches, name: str, shape: Shape | None, env: Mapping[str, Any],
                 trail: Trail) -> tuple[ir.Node | None, Shape | None, bool]:
        h = e.head
        op = h.name if isinstance(h, ir.Ref) else h.func if isinstance(h, ir.Call) else None
        op_span = h.span if isinstance(h, ir.Ref) else getattr(h, "name_span", h.span)
        spec = cat.BRANCHES.get(op or "")
        if spec is None:
            shown = op or source(h)
            hint = did_you_mean(shown, cat.BRANCHES) or "branch constructs: " + ", ".join(cat.BRANCHES)
            if op in self.ctx.blocks or op in cat.LAYERS:
                hint = f"`{op}` is a {'block' if op in self.ctx.blocks else 'layer'}; only " + \
                    ", ".join(cat.BRANCHES) + " take `{ ... }` branches"
            self.ctx.err(op_span, f"unknown branch construct `{shown}`", hint, self.trail_notes(trail))
            return None, None, False
        values, _, problems = self.ctx.bind(spec.name, spec.params, spec.params, h, env)
        if problems:
            self.ctx.diags.extend(replace(p, notes=p.notes + tuple(self.trail_notes(trail))) for p in problems)
            return None, None, False
        kwargs = {p.name: values.get(p.name, p.default) for p in spec.params}
        entries = [x for x in e.body if not isinstance(x, ir.Setting)]
        for x in e.body:
            if isinstance(x, ir.Setting):
                self.ctx.err(x.key_span, f"`{x.key}:` cannot be a branch", "branches are layers, blocks or `{ ... }`")
        if len(entries) < 2:
            self.ctx.err(head(e.span, len(e.name or "") + 2 + len(op or "") if e.name else len(op or "")),
                     f"`{op}` needs at least two branches, got {len(entries)}",
                     "for x + f(x) write `residual { ... }`" if op == "add" else
                     "list the branches inside the braces, separated by newlines or `;`",
                     self.trail_notes(trail))
            return None, None, False
        explicit: dict[str, Span] = {}
        for x in entries:
            if x.name is not None:
                self.check_name(x.name, x.span, explicit)
        namer = _Namer(explicit)
        nodes: list[ir.Node] = []
        outs: list[tuple[str, Span, Shape | None]] = []
        self.branch_depth += 1
        for x in entries:
            if isinstance(x, ir.Repeat) and x.name is None:
                x = replace(x, name=namer.next("repeat"))  # a branch is one entry: a repeat is its own Sequential
            bname = x.name or namer.next("branch")
            node, out, _ = self.entry(x, bname, shape, env, trail, shared=True)
            if node is not None:
                nodes.append(node)
            outs.append((bname, x.span, out))
        self.branch_depth -= 1
        if shape is None or any(out is None for _, _, out in outs):
            return None, None, False
        try:
            combined = spec.combine([out for _, _, out in outs], kwargs)
        except ShapeError as se:
            listing = ", ".join(f"{b} -> {fmt_shape(out)}" for b, _, out in outs if out is not None)
            notes = [Diagnostic(f"branch `{b}` outputs {fmt_shape(out)}", s, "note") for b, s, out in outs
                     if out is not None]
            self.ctx.err(head(e.span, len(e.name) + 2 + len(op or "") if e.name else len(op or "")),
                     f"{op}: {se.message}: {listing}", se.help, [*notes, *self.trail_notes(trail)])
            return None, None, False
        node = ir.BranchNode(name, spec.name, tuple(kwargs.items()), tuple(nodes), tuple(shape), tuple(combined),
                             e.span)
        return node, tuple(combined), False

    # ------------------------------------------------------------ blocks

    def block_use(self, e: ir.Layer, block_name: str, name: str, shape: Shape | None, env: Mapping[str, Any],
                  trail: Trail, shared: bool) -> tuple[ir.Node | None, Shape | None, bool]:
        block = self.ctx.blocks[block_name]
        use_span = e.expr.span
        def_note = Diagnostic(f"block `{block_name}` defined here", head(block.span, 6 + len(block_name)), "note")
        if any(b == block_name for b, _ in trail):
            chain = " -> ".join([*(b for b, _ in trail), block_name])
            self.ctx.err(use_span, f"block `{block_name}` uses itself ({chain})", "blocks cannot be recursive", [def_note])
            return None, None, shared
        if e.inits:
            self.ctx.err(e.inits[0].span, "`with` initialisers apply to layers, not to block uses",
                     "put `with` on the layers inside the block, or use model-wide `init:`")
        here = {**env, "in_shape": shape} if shape is not None else dict(env)
        try:
            bound, problems = self.bind_block(block, e, here, use_span, def_note, shape)
        except _Abort:
            return None, None, shared
        if problems:
            self.ctx.diags.extend(replace(p, notes=p.notes + tuple(self.trail_notes(trail))) for p in problems)
            return None, None, shared
        return self.sequence(block.body, shape, {**self.ctx.consts, **bound}, name, "sequential", e.span,
                             (*trail, (block_name, use_span)), shared)

    def bind_block(self, block: ir.Block, e: ir.Layer, env: Mapping[str, Any], use_span: Span,
                   def_note: Diagnostic, shape: Shape | None) -> tuple[dict[str, Any], list[Diagnostic]]:
        """A block use's arguments; defaults are evaluated at the use site (`in_shape` there)."""
        block_name = block.name
        params = tuple(P(p.name, "any", cat.REQUIRED if p.default is None else p.default) for p in block.params)
        call = e.expr if isinstance(e.expr, ir.Call) else ir.Call(block_name, (), (), e.expr.span)
        args, kwargs = call.args, [k for k in call.kwargs if k.name != "<positional>"]
        problems: list[Diagnostic] = []
        for k in call.kwargs:
            if k.name == "<positional>":
                problems.append(Diagnostic("positional argument after a keyword argument", k.span, "error",
                                           "put positional arguments first"))
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
                problems.append(Diagnostic(f"block `{block_name}` has no parameter `{k.name}`", head(k.span, len(k.name)),
                                           "error", did_you_mean(k.name, names) or f"parameters: ({', '.join(names)})",
                                           (def_note,)))
            elif k.name in bound:
                problems.append(Diagnostic(f"`{k.name}` is given twice", head(k.span, len(k.name)), "error"))
            else:
                try:
                    bound[k.name] = evaluate(k.value, env)
                except NetspecError as err:
                    problems.extend(err.diagnostics)
        scope: dict[str, Any] = dict(self.ctx.consts)
        if shape is not None:
            scope["in_shape"] = shape
        for p in block.params:
            if p.name not in bound:
                if p.default is None:
                    problems.append(Diagnostic(f"block `{block_name}` needs `{p.name}`", use_span, "error",
                                               f"write {block_name}({', '.join(names)})", (def_note,)))
                    continue
                if shape is None and _mentions(p.default, "in_shape"):
                    raise _CascadeInBlock
                try:
                    bound[p.name] = evaluate(p.default, {**scope, **bound})
                except NetspecError as err:
                    problems.extend(replace(d, notes=d.notes + (Diagnostic(
                        f"default of `{p.name}`, evaluated for the use here", use_span, "note"),)) for d in err.diagnostics)
            scope[p.name] = bound.get(p.name)
        return bound, problems

    # ------------------------------------------------------------ catalogue layers

    def layer(self, e: ir.Layer, spec: cat.LayerSpec, name: str, shape: Shape | None, env: Mapping[str, Any],
              trail: Trail, shared: bool) -> tuple[ir.Node | None, Shape | None, bool]:
        call = e.expr
        what = spec.name
        notes = self.trail_notes(trail)
        if shape is None and _mentions(call, "in_shape"):
            raise _Abort  # an earlier layer failed; in_shape is unknown: do not cascade
        here = {**env, "in_shape": shape} if shape is not None else env
        values, spans, problems = self.ctx.bind(what, spec.params, spec.user_params, call, here)
        if spec.int_input and (self.layers_made or self.branch_depth):
            self.ctx.err(call.span, f"{what} must be the first layer of the model: it takes integer token ids",
                     None, notes)
            raise _Abort
        self.layers_made += 1
        if problems:
            torch_style = self.torch_style(e, spec, shape, here, name)
            if torch_style is not None:
                self.ctx.diags.append(replace(torch_style, notes=tuple(notes)))
            else:
                self.ctx.diags.extend(replace(p, notes=p.notes + tuple(notes)) for p in problems)
            raise _Abort
        inits = self.layer_inits(e, spec, here)
        if shape is None:
            return None, None, shared  # an earlier layer failed; do not cascade
        args = {p.name: values.get(p.name, p.default) for p in spec.params if not p.inferred}
        args.update(values)
        try:
            out = self.apply_shape(spec, shape, args, spans)
        except ShapeError as se:
            torch_style = self.torch_style(e, spec, shape, here, name)
            if torch_style is not None:
                self.ctx.diags.append(replace(torch_style, notes=tuple(notes)))
            else:
                self.ctx.err(call.span, f"{what}: {se.message}" if not se.message.startswith(what) else se.message,
                         se.help, notes)
            return None, None, shared
        advice = spec.advice(shape) if spec.advice is not None else None
        if advice is not None:
            self.ctx.warn(call.span, *advice, notes)
        full = dict((p.name, args.get(p.name, p.default)) for p in spec.params)
        if shared and full.get("inplace"):
            full["inplace"] = False
            self.ctx.warn(call.span, f"{what}(inplace=true) would overwrite its input, which "
                      + ("another branch also reads" if self.branch_depth else "belongs to the caller")
                      + "; netspec builds it out of place", "remove `inplace=true` here", notes)
        kwargs = tuple(full.items()) + spec.fixed
        if self.ctx.target == "onnx":
            problem = cat.onnx_problem(spec.name, dict(kwargs), shape)
            if problem:
                self.ctx.err(call.span, f"cannot export to ONNX: {problem}", None, notes)
        self.check_inits(inits, spec, dict(kwargs), what)
        node = ir.LayerNode(name, spec.name, kwargs, tuple(shape), tuple(out), tuple(inits), e.span)
        return node, tuple(out), shared and spec.aliases

    def check_inits(self, inits: list[tuple[str, ir.InitSpec]], spec: cat.LayerSpec, kwargs: dict, what: str) -> None:
        if not inits:
            return
        shapes = cat.parameter_shapes(spec.name, kwargs)
        names = [n for n, _ in shapes]
        for key, init in inits:
            if not any(n == key or n.startswith(key + "_") for n in names):
                have = ", ".join(sorted({n.split("_")[0] for n in names})) or "none"
                self.ctx.err(init.span, f"{what} has no `{key}` parameter to initialise (parameters: {have})")
            elif cat.INITIALISERS[init.name].matrix_only and all(
                    len(s) < 2 for n, s in shapes if n == key or n.startswith(key + "_")):
                self.ctx.err(init.span, f"`{init.name}` needs a weight with at least 2 dimensions; "
                         f"{what}'s `{key}` has 1", "use normal, uniform, constant, zeros or ones")

    def apply_shape(self, spec: cat.LayerSpec, shape: Shape, args: dict, spans: dict) -> Shape:
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

    @staticmethod
    def rank_help(spec: cat.LayerSpec, shape: Shape) -> str | None:
        ranks = spec.ranks or (1,)
        want, most = min(ranks), max(ranks)
        if len(shape) > most and most <= 2 and spec.category not in ("recurrent", "attention"):
            return "insert Flatten before this layer"
        if want >= 2 and len(shape) == 1:
            n = shape[0]
            if spec.category in ("recurrent", "attention") or spec.name == "Last":
                return f"sequence layers take [steps, features]; e.g. `input: [_, {n}]`"
            if n is not None and want == 3 and math.isqrt(n) ** 2 == n:
                r = math.isqrt(n)
                return f"insert Reshape([1, {r}, {r}]) before this layer, or set `input: [1, {r}, {r}]`"
            return f"insert Reshape([...]) before this layer to give it {spec.expects}"
        if spec.name == "Last":
            return "Last follows a recurrent layer (RNN, LSTM, GRU)"
        return None

    def torch_style(self, e: ir.Layer, spec: cat.LayerSpec, shape: Shape | None, env: Mapping[str, Any],
                    name: str) -> Diagnostic | None:
        """`Linear(784, 128)`: the inferred argument written positionally, the PyTorch way."""
        call = e.expr
        inferred = [p for p in spec.params if p.inferred]
        if not inferred or not isinstance(call, ir.Call) or len(call.args) < 2:
            return None
        values, _, problems = self.ctx.bind(spec.name, spec.params, spec.params, call, env)
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

    def layer_inits(self, e: ir.Layer, spec: cat.LayerSpec, env: Mapping[str, Any]) -> list[tuple[str, ir.InitSpec]]:
        out = []
        for k in e.inits:
            if spec.weights is None:
                self.ctx.err(k.span, f"{spec.name} has no parameters to initialise")
                continue
            init = self.ctx.init_spec(k.value, env)
            if init is not None:
                out.append((k.name, replace(init, span=k.span)))
        return out


class _CascadeInBlock(_Abort):
    """A block default reads in_shape after an earlier layer failed."""


class _Namer:
    """Auto names in one scope: the stem plus the smallest counter not taken, in O(1) per
    name (a counter per stem; names are only ever added)."""

    def __init__(self, taken: Mapping[str, Any]):
        self.taken = set(taken)
        self.counters: dict[str, int] = {}

    def next(self, stem: str) -> str:
        n = self.counters.get(stem, 1)
        while f"{stem}{n}" in self.taken:
            n += 1
        self.counters[stem] = n + 1
        name = f"{stem}{n}"
        self.taken.add(name)
        return name


def _norm(v: object) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) if isinstance(v, int) else v


def _mentions(e: object, name: str) -> bool:
    """Whether an expression refers to `name` anywhere."""
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, ir.Ref) and x.name == name:
            return True
        if isinstance(x, ir.Call):
            stack.extend(x.args)
            stack.extend(k.value for k in x.kwargs)
        elif isinstance(x, (ir.ListLit, ir.TupleLit)):
            stack.extend(x.items)
        elif isinstance(x, ir.BinOp):
            stack.extend((x.left, x.right))
        elif isinstance(x, ir.UnaryOp):
            stack.append(x.operand)
        elif isinstance(x, ir.Index):
            stack.extend((x.value, x.index))
    return False
