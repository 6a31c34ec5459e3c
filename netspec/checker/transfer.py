"""Checker, part 6: starting from trained weights (`weights`) and what trains (`freeze`,
`unfreeze`, `param_groups` in `train`).

In: the syntax of the `weights` and `train` sections, the checked model, the typed train
config. Out: ``ir.WeightsConfig`` on the context and the train config's freeze / unfreeze /
param_groups, every layer path resolved against the model (did-you-mean where it names
nothing), or diagnostics at the position that can fix them. ``check_weights_file`` (with
`read_data`, like the data pass) then reads the weights file's keys and shapes (weights/
files.py: header only, no torch) and lists every tensor that does not fit, by name and shape.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import CheckContext, head
from netspec.errors import Diagnostic, NetspecError, Span, did_you_mean
from netspec.syntax.expr import evaluate, source
from netspec.weights.stages import trains_from, under

ABSOLUTE_SCHEDULERS = ("OneCycleLR", "CyclicLR")  # they set every group's learning rate themselves


class TransferChecker:
    """A pass over one ``CheckContext``: it reports through the context; it holds only its own
    bookkeeping."""

    def __init__(self, ctx: CheckContext):
        self.ctx = ctx
        self.model: ir.CheckedModel | None = ctx.model if ctx.model_clean else None
        self.paths = [p for p, _ in ir.walk(self.model.root)] if self.model is not None else []

    # ------------------------------------------------------------ layer paths

    def layer_paths(self, s: ir.Setting) -> list[ir.LayerPath]:
        """`[backbone, head.fc]` (or one path alone): names and dotted paths, strings allowed."""
        items = s.value.items if isinstance(s.value, (ir.ListLit, ir.TupleLit)) else (s.value,)
        out = []
        for e in items:
            path = e.name if isinstance(e, ir.Ref) else e.value if isinstance(e, ir.Str) else None
            if not path:
                self.ctx.err(e.span, f"`{s.key}` takes layer paths, got `{source(e)}`",
                             f"e.g. {s.key}: [conv1, backbone.layer4]")
                continue
            out.append(ir.LayerPath(path, e.span))
        seen: dict[str, ir.LayerPath] = {}
        for p in out:
            if p.path in seen:
                self.ctx.err(p.span, f"`{p.path}` is given twice in `{s.key}`")
            seen[p.path] = p
        return list(seen.values())

    def resolve(self, p: ir.LayerPath, what: str) -> ir.Node | None:
        """The node `p` names, or an error with did-you-mean."""
        if self.model is None:
            return None
        node = ir.find(self.model.root, p.path)
        if node is None:
            top = [c.name for c in ir.children(self.model.root)]
            self.ctx.err(p.span, f"{what}: `{p.path}` names no layer of model `{self.model.name}`",
                         did_you_mean(p.path, self.paths) or "its layers: " + ", ".join(top))
        return node

    def state_under(self, p: ir.LayerPath) -> dict[str, tuple[ir.Shape, bool]]:
        assert self.model is not None
        node = ir.find(self.model.root, p.path)
        return ir.state_shapes(node, p.path + ".") if node is not None else {}

    # ------------------------------------------------------------ weights { }

    def weights_section(self, section: ir.Section | None) -> ir.WeightsConfig | None:
        if section is None:
            return None
        s = self.ctx.settings(section, cat.WEIGHTS_SETTINGS)
        if "from" not in s:
            self.ctx.err(head(section.span, len("weights")), "the weights section needs `from:`",
                         'e.g. `from: "runs/mnist_cnn"` or `from: torchvision("resnet18")` (`from: none`: no weights)')
            return None
        if isinstance(s["from"].value, ir.NoneLit):  # `from: none`: start from the initialisation (an ablation)
            return None
        source_ = self.weights_source(s["from"])
        rename = self.renames(s["rename"]) if "rename" in s else ()
        skip = self.layer_paths(s["skip"]) if "skip" in s else []
        allow = self.ctx.value(s["allow_unused"], "bool", False) if "allow_unused" in s else False
        for p in skip:
            node = self.resolve(p, "skip")
            if node is not None and not self.state_under(p):
                self.ctx.err(p.span, f"skip: `{p.path}` has no parameters or buffers; there is nothing to skip",
                             "skip names the layers left at their initialisation, such as a new head")
        if source_ is None:
            return None
        return ir.WeightsConfig(source_, rename, tuple(skip), bool(allow), section.span)

    def weights_source(self, s: ir.Setting) -> ir.WeightsSource | None:
        from netspec.weights.zoo import ZOO

        e = s.value
        if isinstance(e, ir.Str):
            path = self.file_path(e.value, e.span)
            return ir.WeightsSource("file", path, None, e.span) if path else None
        if isinstance(e, ir.Call) and e.func == "torchvision":
            params = (cat.P("name", "str"), cat.P("file", "str?", None))
            values, spans, problems = self.ctx.bind("torchvision", params, params, e, self.ctx.consts)
            if problems:
                self.ctx.diags.extend(problems)
                return None
            name = values["name"]
            if name not in ZOO:
                self.ctx.err(spans["name"], f'torchvision("{name}"): netspec has no published weights for `{name}`',
                             (did_you_mean(name, ZOO) or "") + " the zoo models with torchvision weights: "
                             + ", ".join(ZOO))
                return None
            file = values.get("file")
            path = self.file_path(file, spans["file"]) if file is not None else None
            if file is not None and path is None:
                return None
            return ir.WeightsSource("torchvision", path, name, e.span)
        name = e.func if isinstance(e, ir.Call) else e.name if isinstance(e, ir.Ref) else None
        hint = 'a file or run folder in quotes (from: "runs/mnist_cnn"), or torchvision("resnet18")'
        if isinstance(e, ir.Ref):
            hint = f'paths are strings: from: "{e.name}"'
        self.ctx.err(getattr(e, "name_span", None) or e.span,
                     f"unknown weights source `{name or source(e)}`", hint)
        return None

    def file_path(self, value: str, span: Span) -> str | None:
        if not value or "\0" in value:
            self.ctx.err(span, "not a usable file path")
            return None
        path = os.path.expanduser(value)
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(self.ctx.spec.file), path)
        return os.path.normpath(path)

    def renames(self, s: ir.Setting) -> tuple[tuple[str, str], ...]:
        if not isinstance(s.value, ir.MapLit):
            self.ctx.err(s.value.span, "rename maps key prefixes to new ones",
                         'e.g. rename: { "features.": "backbone." }')
            return ()
        out: dict[str, str] = {}
        for item in s.value.items:
            value = _evaluated(self.ctx, item.value)
            if item.key is None or not isinstance(value, str):
                self.ctx.err(item.span, 'rename entries are "old prefix": "new prefix"',
                             'e.g. rename: { "features.": "backbone." }')
                continue
            if item.key in out:
                self.ctx.err(item.key_span, f'rename: "{item.key}" is given twice')
                continue
            out[item.key] = value
        return tuple(out.items())

    # ------------------------------------------------------------ train { freeze, unfreeze, param_groups }

    def train_section(self, section: ir.Section | None, train: ir.TrainConfig) -> ir.TrainConfig:
        if section is None:
            return train
        s = {e.key: e for e in section.entries if isinstance(e, ir.Setting)}
        freeze = self.layer_paths(s["freeze"]) if "freeze" in s else []
        for p in freeze:
            if self.resolve(p, "freeze") is not None and not any(param for _, param in self.state_under(p).values()):
                self.ctx.err(p.span, f"freeze: `{p.path}` has no parameters; there is nothing to freeze")
        for p in freeze:
            outer = next((q for q in freeze if q is not p and under(p.path, q.path)), None)
            if outer is not None:
                self.ctx.warn(p.span, f"freeze: `{p.path}` is already frozen by `{outer.path}`")
        unfreeze = self.unfreezes(s["unfreeze"], freeze, train.epochs) if "unfreeze" in s else []
        groups = self.param_groups(s["param_groups"], train) if "param_groups" in s else []
        if train.optimizer.name == "LBFGS" and (groups or unfreeze):
            key = "param_groups" if groups else "unfreeze"
            self.ctx.err(s[key].key_span, f"`{key}` needs parameter groups, which LBFGS does not support",
                         "use another optimizer (SGD, Adam, ...), or freeze without groups or stages")
        if self.model is not None and freeze and not self.ctx.diags:
            self.whole_model_frozen(s["freeze"], freeze, unfreeze)
        return replace(train, freeze=tuple(freeze), unfreeze=tuple(unfreeze), param_groups=tuple(groups))

    def whole_model_frozen(self, s: ir.Setting, freeze: list[ir.LayerPath], unfreeze: list[ir.Unfreeze]) -> None:
        assert self.model is not None
        params = [k for k, (_, param) in ir.state_shapes(self.model.root).items() if param]
        later = {u.path.path: u.epoch for u in unfreeze}
        if params and all(trains_from(k, [p.path for p in freeze], later) != 1 for k in params):
            self.ctx.err(s.value.span, f"freeze covers every parameter of model `{self.model.name}`: the first "
                         "epoch would train nothing", "leave some layers trainable (a new head, say)")

    def unfreezes(self, s: ir.Setting, freeze: list[ir.LayerPath], epochs: int) -> list[ir.Unfreeze]:
        if not isinstance(s.value, ir.MapLit):
            self.ctx.err(s.value.span, "unfreeze maps layer paths to the epoch they train from",
                         "e.g. unfreeze: { backbone.layer4: 3 }")
            return []
        out: list[ir.Unfreeze] = []
        for item in s.value.items:
            epoch = _evaluated(self.ctx, item.value)
            if item.key is None or not isinstance(epoch, int) or isinstance(epoch, bool):
                self.ctx.err(item.span, "unfreeze entries are `path: epoch` (an integer)",
                             "e.g. unfreeze: { backbone.layer4: 3 }")
                continue
            p = ir.LayerPath(item.key, item.key_span)
            if any(u.path.path == p.path for u in out):
                self.ctx.err(p.span, f"unfreeze: `{p.path}` is given twice")
                continue
            if epoch < 2:
                self.ctx.err(item.value.span if item.value else item.span,
                             f"unfreeze: epoch {epoch} is {'the first epoch' if epoch == 1 else 'before the run'}: "
                             f"`{p.path}` would never be frozen",
                             "train it from the start by leaving it out of `freeze`; epochs count from 1")
                continue
            if epoch > epochs:
                self.ctx.err(item.value.span if item.value else item.span,
                             f"unfreeze: `{p.path}` would train from epoch {epoch}, but the run has {epochs} "
                             f"epoch{'s' if epochs != 1 else ''}", f"use an epoch from 2 to {epochs}, or raise `epochs` (in `train`, or "
                             "`--epochs` on the command line)")
                continue
            if self.resolve(p, "unfreeze") is not None:
                frozen = [k for k, (_, param) in self.state_under(p).items()
                          if param and any(under(k, f.path) for f in freeze)]
                if not frozen:
                    self.ctx.err(p.span, f"unfreeze: `{p.path}` is not frozen, so there is nothing to unfreeze",
                                 f"freeze it first: freeze: [{p.path}]")
                    continue
            out.append(ir.Unfreeze(p, epoch, item.span))
        return out

    def param_groups(self, s: ir.Setting, train: ir.TrainConfig) -> list[ir.ParamGroup]:
        if not isinstance(s.value, ir.MapLit):
            self.ctx.err(s.value.span, "param_groups maps layer paths to optimizer settings",
                         "e.g. param_groups: { backbone: {lr: 1e-4}, head: {lr: 1e-2} }")
            return []
        opt = cat.OPTIMIZERS.get(train.optimizer.name)
        allowed = {p.name: p for p in opt.params} if opt is not None else {}
        out: list[ir.ParamGroup] = []
        for item in s.value.items:
            if item.key is None or not isinstance(item.value, ir.MapLit):
                self.ctx.err(item.span, "param_groups entries are `path: { setting: value }`",
                             "e.g. head: {lr: 1e-2, weight_decay: 0}")
                continue
            p = ir.LayerPath(item.key, item.key_span)
            if any(g.path.path == p.path for g in out):
                self.ctx.err(p.span, f"param_groups: `{p.path}` is given twice, so which settings apply is ambiguous")
                continue
            options: dict[str, Any] = {}
            for opt_item in item.value.items:
                name = opt_item.key
                if name is None or name not in allowed or name in ("foreach", "fused", "maximize"):
                    choices = [n for n in allowed if n not in ("foreach", "fused", "maximize")]
                    self.ctx.err(opt_item.key_span or opt_item.span,
                                 f"param_groups: {train.optimizer.name} has no per-group setting `{name}`",
                                 did_you_mean(name or "", choices) or "its settings: " + ", ".join(choices))
                    continue
                value = _evaluated(self.ctx, opt_item.value)
                problem = self.ctx.argument_problem(train.optimizer.name, allowed[name], value, opt_item.value) \
                    if value is not _FAILED and opt_item.value is not None else None
                if problem is not None:
                    self.ctx.err(opt_item.value.span if opt_item.value else opt_item.span, problem[0], problem[1])
                    continue
                if value is not _FAILED:
                    options[name] = value
            if "lr" in options and train.scheduler is not None and train.scheduler.name in ABSOLUTE_SCHEDULERS:
                self.ctx.err(p.span, f"param_groups: {train.scheduler.name} sets every group's learning rate from its "
                             "own arguments, so this group's `lr` would be ignored",
                             "use another scheduler (StepLR, CosineAnnealingLR, ...), or drop `lr` from the group")
            if self.resolve(p, "param_groups") is not None and not any(
                    param for _, param in self.state_under(p).values()):
                self.ctx.err(p.span, f"param_groups: `{p.path}` has no parameters")
                continue
            out.append(ir.ParamGroup(p, tuple(options.items()), item.span))
        self.shadowed(out)
        return out

    def shadowed(self, groups: list[ir.ParamGroup]) -> None:
        """A group whose every parameter belongs to more specific groups applies to nothing:
        the paths overlap in a way the spec does not mean."""
        if self.model is None:
            return
        for g in groups:
            inner = [h for h in groups if h is not g and under(h.path.path, g.path.path) and h.path.path != g.path.path]
            if not inner:
                continue
            params = [k for k, (_, param) in self.state_under(g.path).items() if param]
            if params and all(any(under(k, h.path.path) for h in inner) for k in params):
                shown = ", ".join(f"`{h.path.path}`" for h in inner)
                self.ctx.err(g.path.span, f"param_groups: every parameter of `{g.path.path}` belongs to the more "
                             f"specific {shown}, so its settings apply to nothing",
                             f"remove `{g.path.path}`, or its more specific paths")


_FAILED = object()


def _evaluated(ctx: CheckContext, e: ir.Expr | None) -> Any:
    if e is None:
        return _FAILED
    try:
        return evaluate(e, ctx.consts)
    except NetspecError as err:
        ctx.absorb(err)
        return _FAILED


def transfer_pass(ctx: CheckContext) -> None:
    """After the model pass: the weights section and train's freeze/unfreeze/param_groups."""
    checker = TransferChecker(ctx)
    ctx.weights = checker.weights_section(ctx.sections.get("weights"))
    if ctx.train is not None:
        ctx.train = checker.train_section(ctx.sections.get("train"), ctx.train)
        if ctx.weights is None and ctx.train.freeze and "weights" in ctx.sections:
            first = ctx.train.freeze[0]
            ctx.warn(first.span, f"`{first.path}` is frozen, but `weights` loads nothing (`from: none`): it stays at "
                     "its random initialisation for the frozen epochs",
                     'for a from-scratch comparison unfreeze too: --set "train.freeze=[]" --set "train.unfreeze={ }"')
        elif ctx.weights is None and ctx.train.freeze:
            first = ctx.train.freeze[0]
            ctx.warn(first.span, f"`{first.path}` is frozen, but no weights are loaded: it stays at its random "
                     "initialisation for the frozen epochs", "load trained weights with a `weights` section, or "
                     "leave it out of `freeze`")
        if ctx.weights is not None and checker.model is not None:
            frozen = [p.path for p in ctx.train.freeze]
            later = {u.path.path: u.epoch for u in ctx.train.unfreeze}
            for p in ctx.weights.skip:
                if any(under(p.path, f) for f in frozen):
                    until = min((e for path, e in later.items() if under(p.path, path)), default=None)
                    stays = "it stays random" if until is None else f"it stays random until epoch {until}"
                    ctx.warn(p.span, f"`{p.path}` is skipped (left at its initialisation) and frozen: {stays}",
                             "a layer left at its initialisation should train; leave it out of `freeze`")


# ---------------------------------------------------------------- the file: keys and shapes


def model_tensors(model: ir.CheckedModel) -> dict[str, Any]:
    """name -> TensorInfo of the model's state_dict, from the catalogue."""
    from netspec.weights.files import TensorInfo

    return {k: TensorInfo(tuple(int(d or 0) for d in shape), "float32" if param or not k.endswith(".num_batches_tracked")
                          else "int64") for k, (shape, param) in ir.state_shapes(model.root).items()}


def check_weights_file(checked: ir.CheckedSpec) -> list[Diagnostic]:
    """The weights file's keys and shapes against the model (no tensor is read): every
    mismatch, by name with both shapes, at the weights section; [] when they fit."""
    from netspec.weights import matching

    w = checked.weights
    if w is None:
        return []
    where = head(w.span, len("weights"))
    try:
        found, rules, note = expected_tensors(w)
    except NetspecError as e:
        return [replace(d, span=w.source.span, help=_elsewhere(checked, w) or d.help) if not d.span else d
                for d in e.diagnostics]
    if found is None:
        return []
    model = model_tensors(checked.model)
    m = matching.match(found.tensors, model, rules, w.rename, [p.path for p in w.skip])
    if m.fits(w.allow_unused):
        return []
    lines = matching.describe(m, found.tensors, model, w.allow_unused)
    what = f"{found.path}" + (f" ({found.note})" if found.note else "") + note
    message = f"the weights in {what} do not fit model `{checked.model.name}`:\n" + \
        "\n".join(f"    {line}" for line in lines)
    span = where
    rename_setting = _setting(checked, "weights", "rename")
    if (m.collisions or m.idle_renames) and rename_setting is not None:
        span = rename_setting.span
    return [Diagnostic(message, span, "error", matching.advice(m, w.allow_unused))]


def _elsewhere(checked: ir.CheckedSpec, w: ir.WeightsConfig) -> str | None:
    """A missing relative `from:` that exists relative to the current folder (a packaged
    example run from elsewhere): say where the path is read from."""
    if w.source.kind != "file" or w.source.path is None or os.path.exists(w.source.path):
        return None
    folder = os.path.dirname(os.path.abspath(checked.spec.file))
    written = os.path.relpath(os.path.abspath(w.source.path), folder)
    if written.startswith("..") or not os.path.exists(written) or os.path.abspath(written) == w.source.path:
        return None
    return (f"`from:` paths are relative to the spec's folder ({folder}); ./{written} exists here: copy the spec "
            "here (netspec new NAME) or write the absolute path")


def expected_tensors(w: ir.WeightsConfig) -> tuple[Any, tuple, str]:
    """(the file's header, the key map's rules, a note) for `w`'s source. A torchvision
    model whose file is not cached (and may be downloaded) is judged by the zoo spec's
    tensors, which its key map names exactly."""
    from netspec.weights import files, zoo

    if w.source.kind == "file":
        assert w.source.path is not None
        return files.read_header(w.source.path), (), ""
    row = zoo.ZOO[w.source.zoo or ""]
    if w.source.path is not None:
        return files.read_header(w.source.path), row.rules, f' (torchvision("{row.name}") layout)'
    cached = zoo.find_cached(row)
    if cached is not None:
        return files.read_header(cached), row.rules, f' (torchvision("{row.name}"))'
    if zoo.offline():
        raise zoo.missing_error(row, "downloads are off: NETSPEC_OFFLINE=1")
    from netspec import load

    spec = load(str(zoo.zoo_spec(row.name)))
    tensors = model_tensors(spec.model)
    if not row.counters:
        tensors = {k: v for k, v in tensors.items() if not k.endswith(".num_batches_tracked")}
    return files.WeightsFile(zoo.cache_folder() / row.file, "torchvision", tensors), (), \
        f' (torchvision("{row.name}"), to be downloaded)'


def _setting(checked: ir.CheckedSpec, section: str, key: str) -> ir.Setting | None:
    for item in checked.spec.items:
        if isinstance(item, ir.Section) and item.kind == section:
            for e in item.entries:
                if isinstance(e, ir.Setting) and e.key == key:
                    return e
    return None


__all__ = ["TransferChecker", "transfer_pass", "check_weights_file", "expected_tensors", "model_tensors"]
