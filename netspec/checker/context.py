"""The checker's one context: diagnostics, constants, blocks, results, argument binding.

In: the parsed spec; calls and settings from the syntax IR, schemas (``catalogue.P`` rows,
``SettingSpec``s). Out: evaluated, type- and domain-checked values, or diagnostics collected
on the context. Every pass (checker/pipeline.py's ``PASSES``) reads and fills one
``CheckContext``; the passes own a reference to it rather than inheriting from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import P, describe_domain, describe_type, in_domain, type_ok
from netspec.errors import Diagnostic, NetspecError, Span, did_you_mean, with_article
from netspec.syntax.expr import evaluate, show, source


def head(span: Span, width: int) -> Span:
    """The first `width` columns of a span (a keyword and name), for a tight caret."""
    if not span:
        return span
    return Span(span.file, span.line, span.column, span.line, span.column + max(width, 1))


class CheckContext:
    """What the passes share: diagnostics, constants, blocks, and each pass's result."""

    def __init__(self, spec: ir.Spec, target: str | None = None):
        self.spec = spec
        self.target = target
        self.diags: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.blocks: dict[str, ir.Block] = {}
        self.let_spans: dict[str, Span] = {}  # where each `let` (imported ones too) names its constant
        self.consts: dict[str, Any] = {}
        # results, filled in pass by pass
        self.sections: dict[str, ir.Section] = {}
        self.model_syntax: ir.Model | None = None
        self.data: ir.DataConfig | None = None
        self.train: ir.TrainConfig | None = None
        self.export: ir.ExportConfig | None = None
        self.model: ir.CheckedModel | None = None
        self.search: ir.SearchConfig | None = None
        self.model_clean = False  # the model pass added no error: its shapes can be judged
        self.read_data = False  # check reads the data files (its data pass runs)
        self.text: Any = None  # checker/text.py's TextFacts of text columns, once read

    # ------------------------------------------------------------ diagnostics

    def err(self, span: Span, msg: str, help: str | None = None, notes: Iterable[Diagnostic] = ()) -> None:
        self.diags.append(Diagnostic(msg, span, "error", help, tuple(notes)))

    def warn(self, span: Span, msg: str, help: str | None = None, notes: Iterable[Diagnostic] = ()) -> None:
        self.warnings.append(Diagnostic(msg, span, "warning", help, tuple(notes)))

    def absorb(self, e: NetspecError) -> None:
        self.diags.extend(e.diagnostics)

    # ------------------------------------------------------------ calls against a schema

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
                problems.append(Diagnostic(f"{what} has no argument `{k.name}`", head(k.span, len(k.name)), "error",
                                           hint or f"its arguments are: {names}"))
                continue
            if found.inferred and not allow_inferred_kw:
                continue
            if k.name in values:
                problems.append(Diagnostic(f"`{k.name}` is given twice", head(k.span, len(k.name)), "error"))
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
            problem = self.argument_problem(what, p, v, e)
            if problem is not None:
                problems.append(Diagnostic(problem[0], spans[name], "error", problem[1]))
                continue
            if isinstance(v, float) and "int" in p.type.split("|") and "float" not in p.type and v.is_integer():
                v = int(v)  # `c / 2` in a block body
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

    @staticmethod
    def argument_problem(what: str, p: P, v: Any, e: ir.Expr) -> tuple[str, str | None] | None:
        """(message, help) when `v` is not a valid value of parameter `p`."""
        t = p.type
        if isinstance(v, float) and "int" in t.split("|") and "float" not in t and v.is_integer() \
                and isinstance(e, ir.BinOp):
            v = int(v)
        if not type_ok(v, t):
            help_ = None
            if isinstance(v, str) and "float" in t or isinstance(v, str) and "int" in t.split("|"):
                try:
                    float(v)
                    help_ = f"drop the quotes: {p.name}={v}"
                except ValueError:
                    pass
            return f"`{p.name}` of {what} must be {describe_type(t)}, got {show(v)}", help_
        if p.domain and not in_domain(v, p.domain):
            return f"`{p.name}` of {what} must be {describe_domain(p.domain)}, got {show(v)}", None
        return None

    def call_value(self, e: ir.Expr, table: Mapping[str, Any], kind: str,
                   params_of=lambda spec: spec.params) -> ir.CallValue | None:
        """`SGD(lr=0.1)`, `StepLR(step_size=2)`, `top_k(5)`: a catalogue row with its arguments."""
        name = e.name if isinstance(e, ir.Ref) else e.func if isinstance(e, ir.Call) else None
        if name is None:
            self.err(e.span, f"expected {with_article(kind)}, got `{source(e)}`",
                     f"{kind}s: " + ", ".join(table) if len(table) < 30 else None)
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

    # ------------------------------------------------------------ `key: value` settings

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

    def value(self, s: ir.Setting, t: str, default: Any = None, domain: str = "") -> Any:
        """A setting's value checked against a type of the catalogue's type language."""
        try:
            v = evaluate(s.value, self.consts, symbols=True)
        except NetspecError as e:
            self.absorb(e)
            return default
        if isinstance(v, ir.Symbol):
            if "choice(" in t and type_ok(v.name, t):
                return v.name
            if t in ("str", "str?"):
                return v.name
            choices = [c for part in t.rstrip("?").split("|") if part.startswith("choice(")
                       for c in part[7:-1].split(",")]
            hint = did_you_mean(v.name, [*choices, *self.consts])
            if choices and not hint:
                hint = "allowed: " + ", ".join(choices)
            self.err(s.value.span, f"unknown name `{v.name}`" + (f" for `{s.key}`" if choices else ""), hint)
            return default
        if isinstance(v, float) and v.is_integer() and t.startswith("int"):
            v = int(v)
        problem = self.argument_problem(f"`{s.key}`", P(s.key, t, domain=domain), v, s.value)
        if problem is not None:
            msg = problem[0].replace(f"`{s.key}` of `{s.key}`", f"`{s.key}`")
            self.err(s.value.span, msg, problem[1])
            return default
        return v

    def simple_settings(self, s: dict[str, ir.Setting], table: list[cat.SettingSpec], cfg: dict[str, Any],
                        defaults: Any) -> None:
        """Every setting whose type is in the plain type language, read into `cfg`."""
        for spec in table:
            if spec.key in s and spec.key not in cfg and _plain_type(spec.type):
                cfg[spec.key] = self.value(s[spec.key], spec.type, getattr(defaults, spec.key), spec.domain)


_SPECIAL_TYPES = ("source", "loss", "optimizer", "scheduler", "metrics", "early_stopping", "augments", "logs",
                  "floats?", "any", "tokenizer")


def _plain_type(t: str) -> bool:
    return t.rstrip("?") not in {x.rstrip("?") for x in _SPECIAL_TYPES}
