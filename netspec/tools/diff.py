"""`netspec diff A B`: what changed between two specs (or two run folders).

In: two paths, each a spec, a packaged example's name, or a run folder (its spec.net, and
its run.json for the final metrics and the spec hash). Out: a ``Diff``: layer changes,
parameter totals, differing settings and, for run folders, the metrics side by side;
``render_text`` makes the aligned report, ``to_json`` the stable JSON object. torch is
never imported.

    netspec diff examples/mnist.net wide.net
    netspec diff runs/mnist_cnn runs/mnist_cnn.1 --json

Layers are matched by their path of names (`layer1.add1.main.conv1`). Sibling lists are
aligned as a text diff aligns lines, on what was written (type and arguments, the name
without its counter), so an inserted layer is reported as one insertion; layers whose
auto names shifted because of it (`relu2` -> `relu3`) are listed as renamed, and layers
downstream of a change report their new shapes, inferred arguments and parameters.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.errors import Tell
from netspec.ir import parameter_count
from netspec.syntax.expr import show, source
from netspec.tools.summary import node_type

# ---------------------------------------------------------------- the result


@dataclass
class LayerChange:
    """One added, removed or changed node. Pairs are (A, B); None where a side has none."""

    change: str  # added | removed | changed
    path: str  # A's path (B's for an added node)
    path_b: str | None
    type: tuple[str | None, str | None]
    args: dict[str, tuple[str | None, str | None]]
    shape: tuple[str | None, str | None]
    params: tuple[int | None, int | None]
    layers: tuple[int | None, int | None]  # catalogue layers inside (1 for a layer)
    written: bool = True  # False: only derived values changed (shapes, inferred arguments, parameters)
    inferred: tuple[str, ...] = ()  # which of `args` are inferred from the input shape


@dataclass
class SettingChange:
    key: str  # `train.optimizer.lr`, `data.batch_size`, `model.input`, `let hidden`
    a: str | None
    b: str | None


@dataclass
class Side:
    path: str  # as given
    spec: str  # the spec file read
    checked: ir.CheckedSpec
    run: dict[str, Any] | None = None  # run.json of a run folder


@dataclass
class Diff:
    a: Side
    b: Side
    layers: list[LayerChange] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    settings: list[SettingChange] = field(default_factory=list)

    @property
    def params(self) -> tuple[int, int]:
        return parameter_count(self.a.checked.model.root), parameter_count(self.b.checked.model.root)

    @property
    def differ(self) -> bool:
        """The specs differ (layers, names or settings); run metrics alone do not count."""
        return bool(self.layers or self.renamed or self.settings)


# ---------------------------------------------------------------- loading


def load_side(path: str, overrides: tuple[str, ...] = (), tell: Tell | None = None) -> Side:
    from netspec import load
    from netspec.tools.packaged import resolve_spec
    from netspec.train.runs import read_run_json, run_spec

    if os.path.isdir(path):
        spec = str(run_spec(Path(path)))
        return Side(path, spec, load(spec, overrides), read_run_json(Path(path)))
    spec = resolve_spec(path, tell)
    return Side(path, spec, load(spec, overrides))


def diff_paths(a: str, b: str, tell: Tell | None = None) -> Diff:
    """`a` against `b` (a packaged example standing in for a missing spec is said to `tell`)."""
    return diff_sides(load_side(a, tell=tell), load_side(b, tell=tell))


def diff_sides(a: Side, b: Side) -> Diff:
    d = Diff(a, b)
    ma, mb = a.checked.model, b.checked.model
    _Aligner(d).children(ma.root.children, mb.root.children, "", "")
    d.settings = compare_settings(a.checked, b.checked)
    return d


# ---------------------------------------------------------------- layers


def _stem(name: str) -> str:
    return re.sub(r"\d+$", "", name)


def written(node: ir.Node) -> tuple:
    """What the spec says about a node, recursively: types, arguments as written (inferred
    ones left out), names without their counters. Equal for a layer that only moved."""
    if isinstance(node, ir.LayerNode):
        return ("layer", node.type, _written_args(node))
    if isinstance(node, ir.BranchNode):
        return ("branch", node.op, node.kwargs, tuple(_key(b) for b in node.branches))
    return ("seq", node.kind, tuple(_key(c) for c in node.children))


def _key(node: ir.Node) -> tuple:
    return _stem(node.name), written(node)


def _written_args(node: ir.LayerNode) -> tuple:
    row = cat.LAYERS.get(node.type)
    inferred = {p.name for p in row.params if p.inferred} if row else set()
    return tuple((k, v) for k, v in node.kwargs if k not in inferred)


def _inferred(node: ir.LayerNode) -> set[str]:
    row = cat.LAYERS.get(node.type)
    return {p.name for p in row.params if p.inferred} if row else set()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _count(node: ir.Node) -> int:
    return len(ir.layers(node))


class _Aligner:
    def __init__(self, d: Diff):
        self.d = d

    def children(self, a: tuple[ir.Node, ...], b: tuple[ir.Node, ...], pa: str, pb: str) -> None:
        """Align two sibling lists: nodes written alike pair up; the gaps pair by name."""
        i = j = 0
        for x, y in align([_key(n) for n in a], [_key(n) for n in b], [n.name for n in a], [n.name for n in b]):
            self.region(a[i:x], b[j:y], pa, pb)
            self.pair(a[x], b[y], pa, pb)
            i, j = x + 1, y + 1
        self.region(a[i:], b[j:], pa, pb)

    def region(self, a: tuple[ir.Node, ...], b: tuple[ir.Node, ...], pa: str, pb: str) -> None:
        """Nodes between two aligned pairs: the same name pairs up (a changed layer); what is
        left pairs up in order when both sides have as many of the same kinds (an automatic
        name that changed with the node: `multiply1` -> `add1`); the rest is removed/added."""
        by_name = {y.name: y for y in b}
        pairs = {id(x): by_name[x.name] for x in a if x.name in by_name and _kind(x) == _kind(by_name[x.name])}
        taken = {id(y) for y in pairs.values()}
        rest_a = [x for x in a if id(x) not in pairs]
        rest_b = [y for y in b if id(y) not in taken]
        if rest_a and [_kind(x) for x in rest_a] == [_kind(y) for y in rest_b]:
            pairs.update({id(x): y for x, y in zip(rest_a, rest_b)})
            taken.update(id(y) for y in rest_b)
        for x in a:
            if id(x) in pairs:
                self.pair(x, pairs[id(x)], pa, pb)
            else:
                self.d.layers.append(_one("removed", x, _join(pa, x.name)))
        for y in b:
            if id(y) not in taken:
                self.d.layers.append(_one("added", y, _join(pb, y.name)))

    def pair(self, x: ir.Node, y: ir.Node, pa: str, pb: str) -> None:
        path_a, path_b = _join(pa, x.name), _join(pb, y.name)
        if x.name != y.name:
            self.d.renamed.append((path_a, path_b))
        if isinstance(x, ir.LayerNode) and isinstance(y, ir.LayerNode):
            change = _layer_change(x, y, path_a, path_b)
            if change is not None:
                self.d.layers.append(change)
            return
        own = _container_change(x, y, path_a, path_b)
        if own is not None:
            self.d.layers.append(own)
        self.children(ir.children(x), ir.children(y), path_a, path_b)


MAX_ALIGN_CELLS = 4_000_000  # beyond this, difflib's faster (and rename-blind) matching


def align(ka: list, kb: list, na: list[str], nb: list[str]) -> list[tuple[int, int]]:
    """The pairs (i, j) with ka[i] == kb[j] of an alignment with the fewest insertions and
    deletions and, among those, the fewest renames (na[i] != nb[j]): an edit distance whose
    only moves are match, insert and delete. A common prefix and suffix are taken first."""
    head = 0
    while head < min(len(ka), len(kb)) and ka[head] == kb[head] and na[head] == nb[head]:
        head += 1
    tail = 0
    while (tail < min(len(ka), len(kb)) - head and ka[-1 - tail] == kb[-1 - tail]
           and na[-1 - tail] == nb[-1 - tail]):
        tail += 1
    mid_a, mid_b = ka[head:len(ka) - tail], kb[head:len(kb) - tail]
    if len(mid_a) * len(mid_b) > MAX_ALIGN_CELLS:
        sm = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False)
        middle = [(i + k, j + k) for i, j, n in sm.get_matching_blocks() for k in range(n)]
    else:
        middle = _edit_pairs(mid_a, mid_b, na[head:len(na) - tail], nb[head:len(nb) - tail])
    return ([(k, k) for k in range(head)] + [(head + i, head + j) for i, j in middle]
            + [(len(ka) - tail + k, len(kb) - tail + k) for k in range(tail)])


def _edit_pairs(ka: list, kb: list, na: list[str], nb: list[str]) -> list[tuple[int, int]]:
    gap, rename = 1000, 1
    n, m = len(ka), len(kb)
    # cost[i][j]: aligning ka[i:] with kb[j:]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n, -1, -1):
        row, below = cost[i], cost[i + 1] if i < n else None
        for j in range(m, -1, -1):
            if i == n or j == m:
                row[j] = gap * ((n - i) + (m - j))
                continue
            assert below is not None
            best = min(below[j], row[j + 1]) + gap
            if ka[i] == kb[j]:
                best = min(best, below[j + 1] + (rename if na[i] != nb[j] else 0))
            row[j] = best
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if ka[i] == kb[j] and cost[i][j] == cost[i + 1][j + 1] + (rename if na[i] != nb[j] else 0):
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif cost[i][j] == cost[i + 1][j] + gap:
            i += 1
        else:
            j += 1
    return pairs


def _kind(node: ir.Node) -> str:
    """Nodes of one kind can be compared: layers of the same type, or containers."""
    if isinstance(node, ir.LayerNode):
        return node.type
    return "branch" if isinstance(node, ir.BranchNode) else "seq"


def _one(change: str, node: ir.Node, path: str) -> LayerChange:
    """An added or removed node (a container counts once, with everything inside)."""
    info = (node_type(node), fmt_shape(node.out_shape), parameter_count(node), _count(node))
    args: dict[str, tuple[str | None, str | None]] = {}
    if isinstance(node, ir.LayerNode):
        args = {k: ((show(v), None) if change == "removed" else (None, show(v))) for k, v in _shown_args(node)}

    def side(v: Any) -> tuple[Any, Any]:
        return (v, None) if change == "removed" else (None, v)

    return LayerChange(change, path, None, side(info[0]), args, side(info[1]), side(info[2]), side(info[3]))


def _shown_args(node: ir.LayerNode) -> list[tuple[str, Any]]:
    """The arguments worth showing for an added/removed layer: required ones and those
    that differ from the catalogue default (inferred ones left out)."""
    row = cat.LAYERS.get(node.type)
    if row is None:
        return list(node.kwargs)
    kwargs = dict(node.kwargs)
    return [(p.name, kwargs[p.name]) for p in row.params
            if not p.inferred and p.name in kwargs and (p.default is cat.REQUIRED or kwargs[p.name] != p.default)]


def _layer_change(x: ir.LayerNode, y: ir.LayerNode, pa: str, pb: str) -> LayerChange | None:
    ka, kb = dict(x.kwargs), dict(y.kwargs)
    args = {k: (show(ka[k]) if k in ka else None, show(kb[k]) if k in kb else None)
            for k in [*ka, *(k for k in kb if k not in ka)] if ka.get(k, _MISSING) != kb.get(k, _MISSING)}
    pa_count, pb_count = parameter_count(x), parameter_count(y)
    sa, sb = fmt_shape(x.out_shape), fmt_shape(y.out_shape)
    if not args and x.type == y.type and sa == sb and pa_count == pb_count:
        return None
    inferred = _inferred(x) | _inferred(y)
    was_written = x.type != y.type or any(k not in inferred for k in args)
    return LayerChange("changed", pa, pb if pb != pa else None, (x.type, y.type), args, (sa, sb),
                       (pa_count, pb_count), (1, 1), was_written, tuple(k for k in args if k in inferred))


_MISSING = object()


def _container_change(x: ir.Node, y: ir.Node, pa: str, pb: str) -> LayerChange | None:
    """A container's own attributes: its kind (residual/sequential), its branch operation
    and arguments (concat's dim). Its contents are compared separately."""
    ta, tb = node_type(x), node_type(y)
    args: dict[str, tuple[str | None, str | None]] = {}
    if isinstance(x, ir.BranchNode) and isinstance(y, ir.BranchNode):
        ka, kb = dict(x.kwargs), dict(y.kwargs)
        args = {k: (show(ka.get(k)), show(kb.get(k))) for k in sorted({*ka, *kb}) if ka.get(k) != kb.get(k)}
    if ta == tb and not args:
        return None
    return LayerChange("changed", pa, pb if pb != pa else None, (ta, tb), args,
                       (fmt_shape(x.out_shape), fmt_shape(y.out_shape)), (parameter_count(x), parameter_count(y)),
                       (_count(x), _count(y)))


# ---------------------------------------------------------------- settings


def value_text(v: Any) -> str:
    """A checked value as the user writes it."""
    if isinstance(v, ir.Source):
        return v.kind + "(" + ", ".join(f"{k}={value_text(x)}" for k, x in v.kwargs) + ")"
    if isinstance(v, ir.InitSpec):
        return v.name + ("(" + ", ".join(f"{k}={show(x)}" for k, x in v.kwargs) + ")" if v.kwargs else "")
    if isinstance(v, (ir.Num, ir.Str, ir.Bool, ir.NoneLit, ir.Ref, ir.Call, ir.ListLit, ir.TupleLit, ir.BinOp,
                      ir.UnaryOp, ir.Index)):
        return source(v)
    if isinstance(v, tuple) and any(isinstance(x, ir.CallValue) for x in v):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    if isinstance(v, ir.CallValue) and not v.kwargs:
        return v.name  # `accuracy`, `CrossEntropyLoss`: written without parentheses
    return show(v)


def _same_path(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and os.path.abspath(a) == os.path.abspath(b)


def compare_values(key: str, a: Any, b: Any, paths: frozenset[str] = frozenset()) -> list[SettingChange]:
    """Field by field: a call with the same name compares argument by argument
    (`train.optimizer.lr`); a data source likewise (its file paths compared as absolute paths)."""
    if a == b:
        return []
    if isinstance(a, ir.CallValue) and isinstance(b, ir.CallValue) and a.name == b.name:
        defaults = _defaults(key, a.name)  # an argument left out is its default: `SGD(lr=0.1)` = `SGD(lr=0.1, momentum=0)`
        return _compare_kwargs(key, {**defaults, **dict(a.kwargs)}, {**defaults, **dict(b.kwargs)})
    if isinstance(a, ir.Source) and isinstance(b, ir.Source) and a.kind == b.kind:
        src = cat.SOURCES.get(a.kind)
        return _compare_kwargs(key, dict(a.kwargs), dict(b.kwargs), frozenset(src.paths) if src else frozenset())
    if key.split(".")[-1] in paths and _same_path(a, b):
        return []
    return [SettingChange(key, None if a is _MISSING else value_text(a), None if b is _MISSING else value_text(b))]


def _defaults(key: str, name: str) -> dict[str, Any]:
    """The catalogue defaults of the call `name` held at `key` (`train.optimizer`)."""
    from netspec.checker.overrides import CALL_TABLES

    section, _, setting = key.partition(".")
    row = CALL_TABLES.get((section, setting), {}).get(name)
    params = row if isinstance(row, tuple) else getattr(row, "params", ())
    return {p.name: p.default for p in params if p.default is not cat.REQUIRED}


def _compare_kwargs(key: str, ka: dict, kb: dict, paths: frozenset[str] = frozenset()) -> list[SettingChange]:
    out: list[SettingChange] = []
    for k in [*ka, *(k for k in kb if k not in ka)]:
        out += compare_values(f"{key}.{k}", ka.get(k, _MISSING), kb.get(k, _MISSING), paths)
    return out


def compare_settings(a: ir.CheckedSpec, b: ir.CheckedSpec) -> list[SettingChange]:
    out: list[SettingChange] = []
    ma, mb = a.model, b.model
    out += compare_values("model.name", ma.name, mb.name)
    out += compare_values("model.input", ma.input_shape, mb.input_shape)
    out += compare_values("model.init", ma.init, mb.init)
    ca, cb = dict(a.constants), dict(b.constants)
    for k in [*ca, *(k for k in cb if k not in ca)]:
        data_constant = k in cat.DATA_CONSTANTS and not any(isinstance(i, ir.Let) and i.name == k
                                                           for spec in (a.spec, b.spec) for i in spec.items)
        out += compare_values(f"{'data constant' if data_constant else 'let'} {k}", ca.get(k, _MISSING),
                              cb.get(k, _MISSING))
    if (a.data is None) != (b.data is None):
        out.append(SettingChange("data", "none" if a.data is None else "{ ... }", "none" if b.data is None else "{ ... }"))
    for section, x, y in (("data", a.data or ir.DataConfig(), b.data or ir.DataConfig()),
                          ("train", a.train, b.train), ("export", a.export, b.export)):
        for f in fields(x):
            if not f.name.endswith("span"):
                key = f"{section}.{f.name}"
                va, vb = getattr(x, f.name), getattr(y, f.name)
                if key in AS_WRITTEN:  # a setting whose typed value is not what the user writes
                    va, vb = (AS_WRITTEN[key] if v is None else v for v in (va, vb))
                out += compare_values(key, va, vb, frozenset({"onnx"}))
    return out


# settings whose None means something the spec writes as a word: `batch_size: full`
AS_WRITTEN = {"data.batch_size": ir.Ref("full")}


# ---------------------------------------------------------------- runs


def run_rows(d: Diff) -> list[tuple[str, Any, Any]]:
    """The final metrics of the run folders, side by side (key, A, B); empty for two specs."""
    ra, rb = d.a.run, d.b.run
    if ra is None and rb is None:
        return []
    res_a, res_b = _result(ra), _result(rb)
    keys = [*res_a, *(k for k in res_b if k not in res_a)]
    return [(k, res_a.get(k), res_b.get(k)) for k in keys]


# run.json is read as found: a hand-edited or damaged one may hold any JSON in any field
# (a string for `result`, a number for `spec_hash`, NaN), and none of it may crash diff.


def _result(run: Any) -> dict[str, Any]:
    """The run's final metrics; {} when run.json has none or something else in their place."""
    res = run.get("result") if isinstance(run, dict) else None
    return {str(k): v for k, v in res.items()} if isinstance(res, dict) else {}


def _hash(run: Any) -> str | None:
    h = run.get("spec_hash") if isinstance(run, dict) else None
    return h if isinstance(h, str) and h else None


# ---------------------------------------------------------------- output


def to_json(d: Diff) -> dict[str, Any]:
    """The stable JSON object (keys documented in docs/commands.md)."""
    pa, pb = d.params

    def side(s: Side) -> dict[str, Any]:
        return {"path": s.path, "spec": s.spec, "model": s.checked.model.name, "run": s.run is not None,
                "spec_hash": _hash(s.run), "finished": isinstance(s.run, dict) and bool(s.run.get("finished"))}

    return {
        "a": side(d.a),
        "b": side(d.b),
        "differ": d.differ,
        "layers": [{"change": c.change, "path": c.path, "path_b": c.path_b or c.path, "type": list(c.type),
                    "args": {k: list(v) for k, v in c.args.items()}, "inferred": list(c.inferred),
                    "written": c.written, "shape": list(c.shape), "params": list(c.params),
                    "layers": list(c.layers)} for c in d.layers],
        "renamed": [list(r) for r in d.renamed],
        "params": {"a": pa, "b": pb, "change": pb - pa},
        "settings": [{"key": s.key, "a": s.a, "b": s.b} for s in d.settings],
        "metrics": None if d.a.run is None and d.b.run is None else
        {k: [_json_value(a), _json_value(b)] for k, a, b in run_rows(d)},
    }


MARK = {"added": "+", "removed": "-", "changed": "~"}


def _arrow(a: Any, b: Any, fmt: Any = str) -> str:
    if a is None:
        return fmt(b)
    if b is None:
        return fmt(a)
    return fmt(a) if a == b else f"{fmt(a)} -> {fmt(b)}"


def _num(n: int | None) -> str:
    return "" if n is None else f"{n:,}"


def _layer_row(c: LayerChange) -> tuple[str, ...]:
    path = c.path_b or c.path  # renames are listed on their own line
    kind = _arrow(*c.type)
    if c.change == "changed":
        details = ", ".join(f"{k}: {_arrow(a, b, lambda v: 'none' if v is None else v)}"
                            + (" (inferred)" if k in c.inferred else "") for k, (a, b) in c.args.items())
    else:
        details = ", ".join(f"{k}={a if b is None else b}" for k, (a, b) in c.args.items())
        count = c.layers[0] if c.layers[0] is not None else c.layers[1]
        if kind not in cat.LAYERS and count is not None:
            details = f"{count} layer{'s' if count != 1 else ''}"
    params = _arrow(c.params[0], c.params[1], _num) if any(c.params) else ""
    return MARK[c.change], path, kind, details, _arrow(*c.shape), params


def _table(rows: Sequence[tuple[str, ...]], right: frozenset[int] = frozenset()) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def render_text(d: Diff) -> str:
    a, b = d.a, d.b
    out = [f"--- a: {a.path}  (model {a.checked.model.name})", f"+++ b: {b.path}  (model {b.checked.model.name})", ""]
    out.append("layers")
    own = [c for c in d.layers if c.written]
    if own:
        out += ["  " + line for line in _table([_layer_row(c) for c in own], frozenset({5}))]
    else:
        out.append("  no layer changes")
    if d.renamed:
        shown = ", ".join(f"{x} -> {y}" for x, y in d.renamed[:4])
        more = f", ... ({len(d.renamed)} in all)" if len(d.renamed) > 4 else ""
        out.append(f"  renamed (same layers, new names): {shown}{more}")
    out += _downstream_text([c for c in d.layers if not c.written])
    pa, pb = d.params
    change = pb - pa
    pct = f", {change / pa:+.1%}" if pa and change else ""
    out += ["", f"parameters: {pa:,} -> {pb:,} ({change:+,}{pct})" if change else f"parameters: {pa:,} (unchanged)"]
    out += ["", "settings"]
    if d.settings:
        rows = [("~" if s.a is not None and s.b is not None else "+" if s.a is None else "-", s.key,
                 _arrow(s.a, s.b, lambda v: v)) for s in d.settings]
        out += ["  " + line for line in _table(rows)]
    else:
        out.append("  no setting changes")
    out += _runs_text(d)
    if not d.differ:
        out += ["", "the specs are the same"]
    return "\n".join(out)


SHAPES_LISTED = 5  # more layers than this whose only change is their output shape are counted, not listed


def _downstream_text(derived: list[LayerChange]) -> list[str]:
    """Layers that changed only because something upstream did: new shapes, inferred
    arguments, parameter counts."""
    if not derived:
        return []
    shape_only = [c for c in derived if not c.args and c.params[0] == c.params[1]]
    listed = [c for c in derived if c not in shape_only or len(shape_only) <= SHAPES_LISTED]
    out = ["", "downstream (shapes, inferred arguments and parameters that follow from the changes)"]
    out += ["  " + line for line in _table([_layer_row(c) for c in listed], frozenset({5}))] if listed else []
    if len(shape_only) > SHAPES_LISTED:
        first, last = shape_only[0], shape_only[-1]
        more = " more" if listed else ""
        out.append(f"  ~ {len(shape_only)}{more} layers with new output shapes only: {first.path_b or first.path} "
                   f"({_arrow(*first.shape)}) ... {last.path_b or last.path} ({_arrow(*last.shape)}); "
                   "--json lists them")
    return out


def _runs_text(d: Diff) -> list[str]:
    rows = run_rows(d)
    if d.a.run is None and d.b.run is None:
        return []
    ha, hb = _hash(d.a.run), _hash(d.b.run)
    out = ["", "runs"]
    short = [(h or "-")[:12] for h in (ha, hb)]
    out.append(f"  spec hash  {short[0]} -> {short[1]}" if ha != hb else f"  spec hash  {short[0]} (same)")
    if not rows:
        out.append("  no final metrics (a run not finished?)")
        return out
    table = [("metric", "a", "b", "change")]
    for k, x, y in rows:
        table.append((k, _metric(x), _metric(y), _delta(x, y)))
    return out + ["  " + line for line in _table(table, frozenset({1, 2, 3}))]


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _delta(x: Any, y: Any) -> str:
    if not (_is_num(x) and _is_num(y)):
        return ""
    try:
        return f"{y - x:+.4g}"
    except (OverflowError, ValueError):  # ints beyond a float's range
        return ""


MAX_METRIC_TEXT = 40


def _metric(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    try:
        text = v if isinstance(v, str) else json.dumps(v)
    except (TypeError, ValueError):  # not JSON-able
        text = repr(v)
    text = " ".join(text.split())  # a newline in a metric would break the table
    return text if len(text) <= MAX_METRIC_TEXT else text[:MAX_METRIC_TEXT - 1] + "…"


def _json_value(v: Any) -> Any:
    """Strict JSON: NaN and infinities (which json.loads accepts in run.json) become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v
