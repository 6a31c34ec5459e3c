"""Syntax IR -> checked IR: the checker's passes, composed over one context.

In: ``ir.Spec`` from the parser (plus `--set` overrides, checker/overrides.py). Out:
``ir.CheckedSpec`` with every layer resolved against the catalogue, its full constructor
arguments (inferred ones filled in), input and output shapes, and typed data/train/export
configs. All errors of a file are collected, then raised as one ``NetspecError``; warnings
(lints) ride along in ``CheckedSpec.warnings``. Pure Python: no torch import.

The passes run in the order of ``PASSES``, each reading and filling the one ``CheckContext``
(checker/context.py: diagnostics, constants, blocks, argument binding, the results):

    definitions   lets and blocks, imports first         (checker/definitions.py)
    layout        the sections and the one model present  (here)
    sections      data / train / export -> typed configs  (checker/sections.py)
    data constants  vocab_size, num_classes from the data (checker/text.py)
    model         names, blocks, layers, shapes           (checker/model.py)
    cross         model x loss x metrics x data           (checker/cross.py)
    search        the search space, each value compiled   (checker/search.py)
    text model    a model over padded texts               (checker/text.py)

then, with ``read_data``, the data pass over the checked spec (checker/data.py).

    python -m netspec check examples/mnist.net
"""

from __future__ import annotations

from collections.abc import Callable

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import CheckContext, head
from netspec.checker.cross import CrossChecker
from netspec.checker.definitions import definitions_pass
from netspec.checker.model import ModelChecker
from netspec.checker.search import SearchChecker, without_search
from netspec.checker.sections import SectionChecker
from netspec.checker.text import data_constants_pass, text_model_pass
from netspec.errors import Diagnostic, NetspecError, Span, did_you_mean


def layout_pass(ctx: CheckContext) -> None:
    """Which sections and which model the file holds: unknown or repeated sections, no model
    or a second one."""
    for s in ctx.spec.of(ir.Section):
        if s.kind not in cat.SECTIONS:
            hint = did_you_mean(s.kind, [*cat.SECTIONS, "model", "block", "let", "import"])
            ctx.err(head(s.span, len(s.kind)), f"unknown section `{s.kind}`",
                    hint or "sections are model, data, train, export and search")
        elif s.kind in ctx.sections:
            ctx.err(head(s.span, len(s.kind)), f"duplicate `{s.kind}` section",
                    notes=[Diagnostic("first defined here", head(ctx.sections[s.kind].span, len(s.kind)), "note")])
        else:
            ctx.sections[s.kind] = s
    models = ctx.spec.of(ir.Model)
    if not models:
        ctx.err(Span(ctx.spec.file, 1, 1, 1, 2), "no `model` in this file",
                "add a model, e.g.\n    model net {\n        input: [784]\n        Linear(10)\n    }")
    for extra in models[1:]:
        ctx.err(head(extra.span, 5), f"a file holds exactly one model; `{extra.name}` is a second",
                notes=[Diagnostic("first model here", head(models[0].span, 5), "note")])
    ctx.model_syntax = models[0] if models else None


def sections_pass(ctx: CheckContext) -> None:
    sections = SectionChecker(ctx)
    ctx.data = sections.check_data(ctx.sections.get("data"))
    ctx.train = sections.check_train(ctx.sections.get("train"))
    ctx.export = sections.check_export(ctx.sections.get("export"))


def model_pass(ctx: CheckContext) -> None:
    errors_before = len(ctx.diags)
    if ctx.model_syntax is not None:
        ctx.model = ModelChecker(ctx).check_model(ctx.model_syntax)
    ctx.model_clean = len(ctx.diags) == errors_before


def cross_pass(ctx: CheckContext) -> None:
    if ctx.model is not None and ctx.train is not None and ctx.model_clean:  # a failed layer has no shape to judge
        CrossChecker(ctx).cross_checks(ctx.model, ctx.data, ctx.train)


def search_pass(ctx: CheckContext) -> None:
    """The search space; each value is compiled by these passes over the spec without its
    search section (no data files read: a trial's own run reads them)."""
    section = ctx.sections.get("search")
    if section is None:
        return

    def compile_spec(spec: ir.Spec) -> ir.CheckedSpec:
        return run_passes(CheckContext(without_search(spec), ctx.target))

    ctx.search = SearchChecker(ctx, compile_spec).check_search(section)


PASSES: tuple[Callable[[CheckContext], None], ...] = (definitions_pass, layout_pass, sections_pass,
                                                      data_constants_pass, model_pass, cross_pass, text_model_pass,
                                                      search_pass)


def run_passes(ctx: CheckContext, read_data: bool = False) -> ir.CheckedSpec:
    ctx.read_data = read_data
    for check_pass in PASSES:
        check_pass(ctx)
    if ctx.diags:
        raise NetspecError(ctx.diags + ctx.warnings)
    checked = checked_spec(ctx)
    if read_data and ctx.data is not None:
        from netspec.checker.data import check_data_files

        checked = check_data_files(checked)
    return checked


def checked_spec(ctx: CheckContext) -> ir.CheckedSpec:
    """The checked IR of a context whose passes found no error."""
    assert ctx.model is not None and ctx.train is not None and ctx.export is not None
    return ir.CheckedSpec(ctx.spec, ctx.model, ctx.data, ctx.train, ctx.export, tuple(ctx.consts.items()),
                          tuple(ctx.warnings), "train" in ctx.sections, ctx.search)


def check_context(spec: ir.Spec, *, target: str | None = None) -> CheckContext:
    """Every pass run, and the context handed back errors and all, where `check` would raise:
    for an editor, which shows a spec while it is being written. `ctx.diags` and
    `ctx.warnings` are exactly what `check` reports; `ctx.model` holds every node that
    resolved (layers after a failed one have no shape); `ctx.blocks` and `ctx.let_spans`
    say where each name is defined."""
    ctx = CheckContext(spec, target)
    try:
        for check_pass in PASSES:
            check_pass(ctx)
    except RecursionError:  # as `check` reports it: this one error alone
        ctx.diags, ctx.warnings = [Diagnostic("spec is nested too deeply", Span(spec.file, 1, 1, 1, 2))], []
    return ctx


def check(spec: ir.Spec, *, target: str | None = None, read_data: bool = False) -> ir.CheckedSpec:
    """Check a parsed spec; raises NetspecError with every error found. `read_data`: also
    open the data files (headers, labels, sizes) and check them against the model and loss."""
    try:
        return run_passes(CheckContext(spec, target), read_data)
    except RecursionError:
        raise NetspecError.at(Span(spec.file, 1, 1, 1, 2), "spec is nested too deeply") from None
