"""Checker, last pass: the `search` section (what `netspec tune` explores).

In: the `search` ``ir.Section`` and the context the other passes filled. Out:
``ir.SearchConfig``: every key resolved to a `let` of the file or a path `--set` accepts
(with "did you mean"), every distribution's arguments checked (`loguniform(0, 1)`,
`int(5, 1)`, an empty `choice()` are errors at their position), the metric one the run
reports. Then every value is compiled: each choice, and the ends (and a few inner points)
of each range, is written into the spec and checked as the spec itself is, so a value
that breaks a shape or a setting is an error at its position in `search`, not a failed
trial an hour later. A key whose values all give the same model and settings is a warning.

The compiling is handed in (`compile_spec`: the checker's passes over a spec without its
search section), so this module imports no other pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import CheckContext, head
from netspec.checker.overrides import KeyProblem, canonical_key, key_problem, set_value, settable_keys
from netspec.errors import Diagnostic, NetspecError, Span, did_you_mean
from netspec.syntax.expr import evaluate, show, source

DISTRIBUTIONS = cat.SEARCH_DISTRIBUTIONS
FIXED_KEYS = {s.key: s for s in cat.SEARCH_SETTINGS}
INNER_POINTS = 3  # inner points of a long int range compiled besides its ends
ALL_INT_POINTS = 16  # int ranges with at most this many values are compiled value by value
MAX_GRID_CHECKED = 256  # grid points compiled together (a larger grid: each value alone)

CompileSpec = Callable[[ir.Spec], ir.CheckedSpec]


def without_search(spec: ir.Spec) -> ir.Spec:
    """The spec a trial trains: everything but the `search` section."""
    return replace(spec, items=tuple(i for i in spec.items if not (isinstance(i, ir.Section) and i.kind == "search")))


def reported_keys(checked: ir.CheckedSpec) -> list[str]:
    """What a run of this spec reports every epoch: loss and the metrics, and their `val_`
    twins when there is validation data."""
    keys = ["loss", *(f"top_{m.get('k', 5)}" if m.name == "top_k" else m.name for m in checked.train.metrics)]
    return keys + ([f"val_{k}" for k in keys] if has_validation(checked) else [])


def has_validation(checked: ir.CheckedSpec) -> bool:
    d = checked.data
    return d is not None and (d.validation > 0 or (d.split is not None and d.split[1] > 0))


def default_metric(checked: ir.CheckedSpec) -> str:
    """The run's own monitor: early stopping's, else val_loss (loss without validation data)."""
    es = checked.train.early_stopping
    if es is not None:
        return str(es.get("monitor", "val_loss"))
    return "val_loss" if has_validation(checked) else "loss"


def literal(value: Any, span: Span) -> ir.Expr | None:
    """A constant as an expression to write into a spec (None: not a plain constant)."""
    if value is None:
        return ir.NoneLit(span)
    if isinstance(value, bool):
        return ir.Bool(value, span)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if value < 0:
            return ir.UnaryOp("-", ir.Num(-value, span), span)
        return ir.Num(value, span)
    if isinstance(value, str):
        return ir.Str(value, span)
    if isinstance(value, ir.Symbol):
        return ir.Ref(value.name, span)
    if isinstance(value, tuple):
        items = [literal(v, span) for v in value]
        return None if any(i is None for i in items) else ir.ListLit(tuple(items), span)  # type: ignore[arg-type]
    return None


class SearchChecker:
    def __init__(self, ctx: CheckContext, compile_spec: CompileSpec):
        self.ctx = ctx
        self.compile_spec = compile_spec
        self.base = without_search(ctx.spec)

    def check_search(self, section: ir.Section) -> ir.SearchConfig | None:
        errors_before = len(self.ctx.diags)
        fixed: dict[str, ir.Setting] = {}
        params: list[ir.SearchParam] = []
        seen: dict[str, Span] = {}
        for e in section.entries:
            if not isinstance(e, ir.Setting):
                self.ctx.err(e.span, "the search section holds `key: distribution` entries",
                             "e.g. `hidden: choice(64, 128)` or `train.optimizer.lr: loguniform(1e-4, 1e-1)`")
                continue
            key = canonical_key(e.key)
            if key in seen:
                self.ctx.err(e.key_span, f"duplicate key `{e.key}`", notes=[Diagnostic("first given here", seen[key],
                                                                                      "note")])
                continue
            seen[key] = e.key_span
            if key in FIXED_KEYS:
                fixed[key] = e
                continue
            param = self.param(key, e)
            if param is not None:
                params.append(param)
        config = self.settings(section, fixed, params)
        if len(self.ctx.diags) > errors_before or config is None:
            return None
        if not params:
            self.ctx.err(head(section.span, 6), "the search section names nothing to search",
                         "add a key and its values, e.g. `train.optimizer.lr: loguniform(1e-4, 1e-1)`")
            return None
        if self.ctx.diags:
            return config  # the spec itself has errors: its values cannot be judged
        self.compile_values(config)
        return config

    # ------------------------------------------------------------ one key

    def param(self, key: str, e: ir.Setting) -> ir.SearchParam | None:
        problem = key_problem(self.base, key)
        if problem is not None:
            hint = (did_you_mean(key, settable_keys(self.base)) if problem.unknown else None) or problem.help
            self.ctx.err(e.key_span, f"unknown search key `{e.key}`: {problem.message}",
                         hint or "search keys are `let` names of this file or settings --set accepts")
            return None
        v = e.value
        func = v.func if isinstance(v, ir.Call) else v.name if isinstance(v, ir.Ref) else None
        if func not in DISTRIBUTIONS or not isinstance(v, ir.Call):
            hint = did_you_mean(func, DISTRIBUTIONS) if func else None
            self.ctx.err(v.span, f"`{e.key}` needs a distribution, got `{source(v)}`",
                         hint or "choice(v1, v2, ...), uniform(low, high), loguniform(low, high) or "
                         "int(low, high, step=1)")
            return None
        if func == "choice":
            return self.choice(key, e, v)
        return self.range(key, e, v)

    def choice(self, key: str, e: ir.Setting, v: ir.Call) -> ir.SearchParam | None:
        for k in v.kwargs:
            self.ctx.err(head(k.span, len(k.name)), f"choice takes values only, not `{k.name}=`",
                         "write the values in order: choice(32, 64, 128)")
        if not v.args:
            self.ctx.err(v.span, "choice() needs at least one value", "e.g. choice(32, 64, 128)")
            return None
        exprs: list[ir.Expr] = []
        labels: list[Any] = []
        for a in v.args:
            expr, label = self.choice_value(a)
            if expr is None:
                continue
            if label in labels:
                first = v.args[labels.index(label)]
                self.ctx.err(a.span, f"{source(a)} is listed twice in choice(...)",
                             notes=[Diagnostic("first here", first.span, "note")])
                continue
            exprs.append(expr)
            labels.append(label)
        if len(exprs) != len(v.args):
            return None
        if len(exprs) == 1:
            self.ctx.warn(v.span, f"choice with one value: every trial uses {source(exprs[0])} for `{e.key}`",
                          f"set it in the spec instead (--set {key}=...), or give more values")
        return ir.SearchParam(key, "choice", tuple(exprs), tuple(labels), span=v.span, key_span=e.key_span)

    def choice_value(self, a: ir.Expr) -> tuple[ir.Expr | None, Any]:
        """(what to write into the spec, the label Optuna stores). Constants are written as
        literals (`choice(h, 2 * h)` for `h` itself must not refer to itself); names (`relu`,
        `standard`), calls and lists keep their text and are labelled by it."""
        if isinstance(a, ir.Kwarg):
            return None, None
        try:
            value = evaluate(a, self.ctx.consts, symbols=True)
        except NetspecError:
            if isinstance(a, ir.Call):
                return a, source(a)
            try:  # report the real problem (an unknown name inside a list)
                evaluate(a, self.ctx.consts, symbols=True)
            except NetspecError as err:
                self.ctx.absorb(err)
            return None, None
        expr = literal(value, a.span)
        if expr is None:
            self.ctx.err(a.span, f"{show(value)} cannot be a search value")
            return None, None
        if isinstance(value, ir.Symbol):
            return expr, value.name
        if isinstance(value, tuple):
            return expr, source(expr)
        return expr, value

    def range(self, key: str, e: ir.Setting, v: ir.Call) -> ir.SearchParam | None:
        kind = v.func
        bounds: list[Any] = []
        for a in v.args:
            try:
                bounds.append(evaluate(a, self.ctx.consts))
            except NetspecError as err:
                self.ctx.absorb(err)
                return None
        step, step_span = 1, v.span
        for k in v.kwargs:
            if kind == "int" and k.name == "step":
                try:
                    step, step_span = evaluate(k.value, self.ctx.consts), k.value.span
                except NetspecError as err:
                    self.ctx.absorb(err)
                    return None
            else:
                allowed = "low, high, step=" if kind == "int" else "low, high"
                self.ctx.err(head(k.span, len(k.name)), f"{kind} has no argument `{k.name}`",
                             f"{kind}({allowed}...) takes its bounds in order")
                return None
        if len(bounds) != 2:
            self.ctx.err(v.span, f"{kind} takes two bounds, got {len(bounds)}",
                         f"{kind}({DISTRIBUTIONS[kind][0]})")
            return None
        low, high = bounds
        spans = [a.span for a in v.args]
        number = (int,) if kind == "int" else (int, float)
        for b, s in zip(bounds, spans):
            if isinstance(b, bool) or not isinstance(b, number) or (isinstance(b, float) and not math.isfinite(b)):
                what = "an integer" if kind == "int" else "a finite number"
                self.ctx.err(s, f"a bound of {kind}(...) must be {what}, got {show(b)}",
                             "choice(...) picks among values that are not numbers" if isinstance(b, str) else None)
                return None
        if kind == "loguniform" and low <= 0:
            self.ctx.err(spans[0], f"loguniform needs bounds above 0, got {show(low)}",
                         f"e.g. loguniform({show(high / 1000) if high > 0 else '1e-4'}, {show(high) if high > 0 else '1e-1'})"
                         "; uniform(...) takes 0 and negative numbers")
            return None
        if low >= high:
            self.ctx.err(v.span, f"{kind}({show(low)}, {show(high)}): the low bound must be below the high one",
                         f"{kind}({show(high)}, {show(low)})" if low > high else
                         f"one value is not a search: set it in the spec (--set {key}={show(low)})")
            return None
        if kind == "int":
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                self.ctx.err(step_span, f"step of int(...) must be an integer of at least 1, got {show(step)}")
                return None
            if (high - low) % step:
                fit = low + (high - low) // step * step
                self.ctx.err(v.span, f"int({low}, {high}, step={step}): {high} is not reached in steps of {step} "
                             f"from {low}", f"int({low}, {fit}, step={step})")
                return None
            return ir.SearchParam(key, kind, low=low, high=high, step=step, span=v.span, key_span=e.key_span)
        return ir.SearchParam(key, kind, low=float(low), high=float(high), span=v.span, key_span=e.key_span)

    # ------------------------------------------------------------ trials, metric, sampler, pruner

    def settings(self, section: ir.Section, fixed: dict[str, ir.Setting],
                 params: list[ir.SearchParam]) -> ir.SearchConfig | None:
        trials = 20
        if "trials" in fixed:
            trials = self.ctx.value(fixed["trials"], "int", None, "[1,inf)")
        sampler = self.ctx.value(fixed["sampler"], "choice(tpe,random,grid)", None) if "sampler" in fixed else "tpe"
        pruner = "none"
        if "pruner" in fixed and not isinstance(fixed["pruner"].value, ir.NoneLit):
            pruner = self.ctx.value(fixed["pruner"], "choice(none,median,hyperband)", None)
        metric = None
        if "metric" in fixed:
            m = fixed["metric"]
            value = m.value
            metric = value.name if isinstance(value, ir.Ref) else value.value if isinstance(value, ir.Str) else None
            if metric is None:
                self.ctx.err(value.span, f"metric is the name of a reported value, got `{source(value)}`",
                             "e.g. metric: val_accuracy")
        if trials is None or sampler is None or pruner is None or ("metric" in fixed and metric is None):
            return None
        if sampler == "grid":
            grid = 1
            for p in params:
                if p.kind in ("uniform", "loguniform"):
                    self.ctx.err(p.span, f"the grid sampler cannot enumerate {p.kind}(...)",
                                 "give the values: choice(...) or int(low, high, step=...)")
                    return None
                grid *= len(p.choices) if p.kind == "choice" else (int(p.high) - int(p.low)) // p.step + 1
            if "trials" in fixed and trials > grid:
                self.ctx.err(fixed["trials"].value.span, f"trials: {trials} is more than the grid's {grid} points",
                             f"trials: {grid} (or leave it out: the grid sampler runs every point)")
                return None
            trials = min(trials, grid) if "trials" in fixed else grid
        checked_ok = not self.ctx.diags and self.ctx.train is not None and self.ctx.model is not None
        if metric is None:
            metric = default_metric(self._base_checked()) if checked_ok else "val_loss"
        minimize = cat.lower_is_better(metric)
        if checked_ok:
            reported = reported_keys(self._base_checked())
            if metric not in reported:
                span = fixed["metric"].value.span if "metric" in fixed else head(section.span, 6)
                self.ctx.err(span, f"the runs of this spec do not report `{metric}`", self._metric_help(metric,
                                                                                                       reported))
                return None
        return ir.SearchConfig(tuple(params), metric, minimize, trials, sampler, pruner, "trials" in fixed,
                               section.span)

    def _metric_help(self, metric: str, reported: list[str]) -> str:
        if metric.startswith("val_") and not any(k.startswith("val_") for k in reported):
            return "there is no validation data: add `validation: 0.2` to the data section"
        if metric.startswith("test_"):
            return ("the test split is reported once, after training: tuning on it would fit the test set; "
                    "hold out validation data (`validation: 0.2`) and search on val_...")
        base = metric.removeprefix("val_")
        if base in cat.METRICS and base not in reported:
            return f"add `{base}` to the train section's metrics: [...]; reported now: " + ", ".join(reported)
        return did_you_mean(metric, reported) or "reported: " + ", ".join(reported)

    _checked: ir.CheckedSpec | None = None

    def _base_checked(self) -> ir.CheckedSpec:
        """The spec as the other passes checked it."""
        ctx = self.ctx
        assert ctx.model is not None and ctx.train is not None and ctx.export is not None
        return ir.CheckedSpec(ctx.spec, ctx.model, ctx.data, ctx.train, ctx.export, tuple(ctx.consts.items()))

    # ------------------------------------------------------------ compiling every value

    def points(self, p: ir.SearchParam) -> list[tuple[ir.Expr, Span]]:
        """The values of `p` that are compiled: each choice; a range's ends and inner points."""
        if p.kind == "choice":
            return [(c, c.span) for c in p.choices]
        call_args = self._range_arg_spans(p)
        if p.kind == "int":
            assert p.low is not None and p.high is not None and p.step is not None
            values = list(range(int(p.low), int(p.high) + 1, p.step))
            if len(values) > ALL_INT_POINTS:
                inner = [values[len(values) * (i + 1) // (INNER_POINTS + 1)] for i in range(INNER_POINTS)]
                values = [values[0], *inner, values[-1]]
            return [(literal(v, p.span) or ir.Num(v, p.span),
                     call_args[0] if v == p.low else call_args[1] if v == p.high else p.span) for v in values]
        assert p.low is not None and p.high is not None
        low, high = float(p.low), float(p.high)
        mid = math.sqrt(low * high) if p.kind == "loguniform" else (low + high) / 2
        return [(literal(x, span) or ir.Num(x, span), span)
                for x, span in ((low, call_args[0]), (mid, p.span), (high, call_args[1]))]

    def _range_arg_spans(self, p: ir.SearchParam) -> tuple[Span, Span]:
        sec = self.ctx.sections.get("search")
        for e in sec.entries if sec else ():
            if isinstance(e, ir.Setting) and canonical_key(e.key) == p.key and isinstance(e.value, ir.Call) \
                    and len(e.value.args) == 2:
                return e.value.args[0].span, e.value.args[1].span
        return p.span, p.span

    def compile_values(self, config: ir.SearchConfig) -> None:
        """Every value written into the spec and checked; where a key's path lies under
        another searched key (`train.optimizer.lr` under `train.optimizer`), under each of
        that key's choices."""
        by_key = {p.key: p for p in config.params}
        for p in config.params:
            parents = [q for q in config.params if p.key.startswith(q.key + ".") and q.kind == "choice"]
            contexts = list(itertools.product(*[[(q.key, c) for c in q.choices] for q in parents])) or [()]
            results = []
            for point, span in self.points(p):
                for context in contexts:
                    checked = self.compile_point(config, [*context, (p.key, point)], span, p.key)
                    if checked is None:
                        break
                    results.append(checked)
                else:
                    continue
                break  # one error per key: the first failing value
            if len(results) > 1 and all(_same_run(results[0], r) for r in results[1:]):
                self.ctx.warn(p.key_span, f"every value of `{p.key}` gives the same model and settings: its "
                              "trials would not differ", f"is `{p.key}` used? a `let` must be referred to by the "
                              "model or a setting")
        if config.sampler == "grid" and not self.ctx.diags:
            grid = [[(p.key, c) for c, _ in self.points(p)] for p in config.params if p.key in by_key]
            size = math.prod(len(g) for g in grid)
            if 1 < size <= MAX_GRID_CHECKED and len(grid) > 1:
                for combo in itertools.product(*grid):
                    if self.compile_point(config, list(combo), head(config.span, 6), None) is None:
                        break

    def compile_point(self, config: ir.SearchConfig, values: list[tuple[str, ir.Expr]], span: Span,
                      key: str | None) -> ir.CheckedSpec | None:
        """The spec with `values` written in, checked; None after reporting why it fails."""
        spec = self.base
        shown = ", ".join(f"{k} = {source(v)}" for k, v in values)
        try:
            for k, v in sorted(values, key=lambda kv: kv[0].count(".")):  # a call before its arguments
                spec = set_value(spec, k, v)
        except KeyProblem as p:
            self.ctx.err(span, f"with {shown}: {p.message}", p.help)
            return None
        try:
            checked = self.compile_spec(spec)
        except NetspecError as e:
            errors = [d for d in e.diagnostics if d.severity == "error"] or e.diagnostics
            if not errors:
                self.ctx.err(span, f"with {shown} the spec does not compile")
                return None
            d = errors[0]
            notes = [Diagnostic("where it fails", d.span, "note", d.help)] if d.span and d.span != span else []
            self.ctx.err(span, f"with {shown}: {d.message}" if key else f"the combination {shown} does not compile: "
                         f"{d.message}", None if notes else d.help, notes)
            return None
        reported = reported_keys(checked)
        if config.metric not in reported:
            self.ctx.err(span, f"with {shown} the run does not report `{config.metric}` (the search metric)",
                         "reported then: " + ", ".join(reported))
            return None
        return checked


def _same_run(a: ir.CheckedSpec, b: ir.CheckedSpec) -> bool:
    return (a.model, a.data, a.train, a.export) == (b.model, b.data, b.train, b.export)
