"""Checker pass 1: definitions. The lets and blocks of imported files (depth first), then
of this file, in source order.

In: the ``CheckContext`` of a parsed spec. Out: ``ctx.consts`` (evaluated `let` values) and
``ctx.blocks`` filled in; diagnostics for import cycles, missing or unusable imports, names
defined twice and reserved names.
"""

from __future__ import annotations

import os
from dataclasses import replace

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import CheckContext, head
from netspec.errors import Diagnostic, NetspecError, Span
from netspec.syntax.expr import FAILED, evaluate
from netspec.syntax.parser import parse_file


def definitions_pass(ctx: CheckContext) -> None:
    load_definitions(ctx, ctx.spec, [os.path.abspath(ctx.spec.file)], let_spans=ctx.let_spans)


def load_definitions(ctx: CheckContext, spec: ir.Spec, stack: list[str], loaded: set[str] | None = None,
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
        path = import_path(ctx, spec, imp)
        if path is None:
            continue
        key = os.path.realpath(path)
        real_stack = [os.path.realpath(p) for p in stack]
        if key in real_stack:
            cycle = stack[real_stack.index(key):]
            chain = " -> ".join(os.path.basename(p) for p in [*cycle, path])
            ctx.err(imp.span, f"import cycle: {chain}", "move the shared blocks into a third file")
            continue
        if key in loaded:  # already imported through another path: its definitions are in
            continue
        loaded.add(key)
        try:
            sub = parse_file(path)
        except NetspecError as e:
            ctx.diags.extend(replace(d, notes=d.notes + (Diagnostic("imported here", imp.span, "note"),))
                              for d in e.diagnostics)
            continue
        load_definitions(ctx, sub, [*stack, path], loaded, let_spans)
    for item in spec.items:
        if isinstance(item, ir.Let):
            name_span = head(item.span, 3 + 1 + len(item.name))
            first = let_spans.get(item.name)
            if first is not None:
                ctx.err(name_span, f"`{item.name}` is defined twice",
                         notes=[Diagnostic("first defined here", first, "note")])
            else:
                let_spans[item.name] = name_span
            if item.name == "in_shape":
                ctx.err(name_span, "`in_shape` is reserved: it names the shape arriving at a layer")
            try:
                ctx.consts[item.name] = evaluate(item.value, ctx.consts)
            except NetspecError as e:
                ctx.absorb(e)
                ctx.consts[item.name] = FAILED
        elif isinstance(item, ir.Block):
            name_span = head(item.span, 5 + len(item.name) + 1)
            prev = ctx.blocks.get(item.name)
            if prev is not None:
                ctx.err(name_span, f"block `{item.name}` is defined twice",
                         notes=[Diagnostic("first defined here", head(prev.span, 5 + len(prev.name) + 1),
                                           "note")])
            if item.name in cat.LAYERS or item.name in cat.BRANCHES:
                ctx.err(name_span,
                         f"block `{item.name}` has the name of a catalogue "
                         f"{'layer' if item.name in cat.LAYERS else 'branch construct'}", "rename the block")
            ctx.blocks[item.name] = item

def import_path(ctx: CheckContext, spec: ir.Spec, imp: ir.Import) -> str | None:
    """Imports name .net files, relative to the importing file's folder."""
    if "\0" in imp.path or not imp.path:
        ctx.err(imp.span, "not a usable import path")
        return None
    if not imp.path.endswith(".net"):
        ctx.err(imp.span, f'cannot import "{imp.path}": imports must name a .net spec file')
        return None
    path = os.path.normpath(os.path.join(os.path.dirname(spec.file), os.path.expanduser(imp.path)))
    if not os.path.exists(path):
        ctx.err(imp.span, f"cannot import \"{imp.path}\": no such file",
                 f"paths are relative to this file's folder ({os.path.dirname(spec.file) or '.'})")
        return None
    if not os.path.isfile(path):
        ctx.err(imp.span, f"cannot import \"{imp.path}\": not a regular file")
        return None
    return path
