"""Checker, part 3: the `data`, `train` and `export` sections.

In: ``ir.Section`` entries. Out: typed ``ir.DataConfig`` / ``ir.TrainConfig`` /
``ir.ExportConfig``. Keys, types and value domains come from the catalogue's SettingSpec
tables; calls (sources, losses, optimizers, schedulers, metrics, augmentations) from its
rows. Data files are not opened here (check_data.py does that).
"""

from __future__ import annotations

import os
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import CheckContext, head
from netspec.errors import NetspecError, did_you_mean
from netspec.ir import Symbol
from netspec.syntax.expr import evaluate, show, source, validate_table

QUANTIZATIONS = ("int8", "none")  # `quantize:` values (export)
MIN_INT8_OPSET = 13  # per-channel DequantizeLinear (axis) arrived in opset 13
NOMINAL_IMAGE = (3, 1 << 20, 1 << 20)  # (C, H, W) for checking augmentation settings without the data


class SectionChecker:
    """A pass over one ``CheckContext``: it reports through the context and reads its
    constants and blocks; it holds only its own bookkeeping."""

    def __init__(self, ctx: CheckContext):
        self.ctx = ctx

    # ------------------------------------------------------------ data

    def check_data(self, section: ir.Section | None) -> ir.DataConfig | None:
        if section is None:
            return None
        s = self.ctx.settings(section, cat.DATA_SETTINGS)
        cfg: dict[str, Any] = {"span": section.span}
        for key in ("train", "test"):
            if key in s and not (key == "test" and isinstance(s[key].value, ir.NoneLit)):  # `test: none`: no test split
                cfg[key] = self.source(s[key])
        self.ctx.simple_settings(s, cat.DATA_SETTINGS, cfg, ir.DataConfig())
        if cfg.get("batch_size") == "full":
            cfg["batch_size"] = None
        if "normalize_target" in s:  # written (`none` included): no lint suggests it
            cfg["normalize_target_span"] = s["normalize_target"].key_span
            cfg["normalize_target"] = cfg.get("normalize_target") or "none"
        if "image_size" in cfg and cfg["image_size"] is not None:
            size = cfg["image_size"]
            size = (size, size) if isinstance(size, int) else tuple(size)
            if len(size) != 2:
                self.ctx.err(s["image_size"].value.span, f"image_size is [height, width], got {show(size)}")
                cfg.pop("image_size")
            else:
                cfg["image_size"] = size
        if "split" in s and not isinstance(s["split"].value, ir.NoneLit):
            v = self.ctx.value(s["split"], "floats")
            if isinstance(v, tuple):
                if len(v) != 3 or any(x < 0 for x in v) or abs(sum(v) - 1) > 1e-6:
                    self.ctx.err(s["split"].value.span, f"split must be three fractions [train, validation, test] "
                             f"adding up to 1, got {show(v)}")
                elif v[0] <= 0:
                    self.ctx.err(s["split"].value.span, "split leaves no training data", "the first fraction is train")
                else:
                    cfg["split"] = v
            if "test" in s:
                self.ctx.err(s["split"].key_span, "`split` divides one source; do not give `test:` as well")
            if "validation" in s and cfg.get("validation"):  # `validation: 0` holds out nothing
                self.ctx.err(s["validation"].key_span, "`split` already holds out validation data; drop `validation:`")
        if "labels" in s and not isinstance(s["labels"].value, ir.NoneLit):
            v = self.ctx.value(s["labels"], "any")
            if isinstance(v, tuple) and v and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
                cfg["labels"] = tuple(str(x) for x in v)
                if len(set(cfg["labels"])) != len(cfg["labels"]):
                    self.ctx.err(s["labels"].value.span, "labels must be distinct")
            else:
                self.ctx.err(s["labels"].value.span, "labels must be a list of class names", 'e.g. labels: ["cat", "dog"]')
        if "augment" in s:
            cfg["augment"] = self.augmentations(s["augment"])
        self.text_settings(s, cfg)
        if "train" not in s:
            self.ctx.err(head(section.span, 4), "the data section needs a `train:` source",
                     'e.g. `train: mnist(split="train")`')
        return ir.DataConfig(**cfg)

    def text_settings(self, s: dict[str, ir.Setting], cfg: dict[str, Any]) -> None:
        """`tokenizer:`, `max_len:`, `bucket:` and the text columns of the sources: text goes
        with a text column, and the test source reads the training source's text columns."""
        if "tokenizer" in s and not isinstance(s["tokenizer"].value, ir.NoneLit):
            call = self.ctx.call_value(s["tokenizer"].value, cat.TOKENIZERS, "tokenizer")
            if call is not None:
                given = dict(call.kwargs)
                full = tuple((p.name, given.get(p.name, p.default)) for p in cat.TOKENIZERS[call.name].params)
                cfg["tokenizer"] = ir.CallValue(call.name, full, call.span)
        train, test = cfg.get("train"), cfg.get("test")
        text = train.get("text") if train is not None and train.kind == "csv" else None
        if not text:
            if train is None:
                return
            for key in ("tokenizer", "max_len", "bucket"):
                if key in s:
                    self.ctx.err(s[key].key_span, f"`{key}:` is for text columns, and the training source has none",
                                 'name them in the source: csv("file.csv", target="label", text="review")')
            if test is not None and test.kind == "csv" and test.get("text"):
                self.ctx.err(test.span_of("text"), "the test source has text columns but the training source has none")
            return
        if "tokenizer" not in cfg:
            cfg["tokenizer"] = ir.CallValue("words", tuple((p.name, p.default) for p in cat.TOKENIZERS["words"].params))
        if test is not None:
            if test.kind != "csv":
                self.ctx.err(test.span, f"the training data are texts of a CSV; the test source must be one too, "
                             f"not {test.kind}(...)", f'e.g. csv("test.csv", target=..., text={show(text)})')
            elif test.get("text") and tuple(test.get("text")) != tuple(text):
                self.ctx.err(test.span_of("text"), f"the test source reads the text column(s) {show(test.get('text'))}, "
                             f"the training source {show(text)}: the model reads the same columns from both",
                             "make them the same (is one of them misspelled?)")

    def augmentations(self, s: ir.Setting) -> tuple[ir.CallValue, ...]:
        v = s.value
        items = v.items if isinstance(v, ir.ListLit) else (v,)
        out = []
        for item in items:
            call = self.ctx.call_value(item, cat.AUGMENTS, "augmentation")
            if call is not None:
                spec = cat.AUGMENTS[call.name]
                given = dict(call.kwargs)
                full = tuple((p.name, given.get(p.name, p.default)) for p in spec.params)
                out.append(ir.CallValue(call.name, full, call.span))
        self.augment_values(out)
        return tuple(out)

    def augment_values(self, ops: list[ir.CallValue]) -> None:
        """Settings wrong for any image (negative degrees, scale=(max, min), a crop after a
        smaller crop), found without the data: on a nominal image too large and too colourful
        to trip the size and channel checks, which wait for the data's real shape."""
        from netspec.data.augment import augment_problems

        if any(v is cat.REQUIRED for a in ops for _, v in a.kwargs):
            return  # a missing argument is reported already
        for index, message in augment_problems([(a.name, dict(a.kwargs)) for a in ops], NOMINAL_IMAGE):
            self.ctx.err(ops[index].span, message)

    def source(self, s: ir.Setting) -> ir.Source | None:
        e = s.value
        name = e.func if isinstance(e, ir.Call) else e.name if isinstance(e, ir.Ref) else None
        if name is None or name not in cat.SOURCES:
            shown = name or source(e)
            hint = did_you_mean(shown, cat.SOURCES) or "sources: " + ", ".join(cat.SOURCES)
            if isinstance(e, ir.Str):
                hint = f'name the format: csv("{e.value}", target=...), image_folder("{e.value}"), npy(x=...), ...'
            self.ctx.err(getattr(e, "name_span", None) or e.span, f"unknown data source `{shown}`", hint)
            return None
        spec = cat.SOURCES[name]
        if name == "table":
            return self.table_source(e, spec)
        values, spans, problems = self.ctx.bind(name, spec.params, spec.params, e, self.ctx.consts)
        if problems:
            self.ctx.diags.extend(problems)
            return None
        full = {p.name: values.get(p.name, None if p.default is cat.REQUIRED else p.default) for p in spec.params}
        if name in ("mnist", "fashion_mnist") and "split" not in values:
            full["split"] = s.key if s.key in ("train", "test") else "train"
        if name == "csv":
            if isinstance(full["target"], str):
                full["target"] = (full["target"],)
            if not full["target"]:
                self.ctx.err(spans.get("target", e.span), "csv needs at least one target column")
            if isinstance(full["text"], str):
                full["text"] = (full["text"],)
            for key in ("target", "features", "categorical", "text"):
                items = full.get(key) or ()
                dup = sorted({c for c in items if list(items).count(c) > 1})
                if dup:
                    self.ctx.err(spans.get(key, e.span), f"`{key}` lists {', '.join(map(show, dup))} twice")
            self.text_columns(full, spans, e.span)
        for key in spec.paths:
            v = full.get(key)
            if isinstance(v, str):
                if "\0" in v:
                    self.ctx.err(spans.get(key, e.span), "a path cannot contain a NUL byte")
                    return None
                if not v:
                    self.ctx.err(spans.get(key, e.span), f"`{key}` is an empty path")
                    return None
                full[key] = _resolve(v, self.ctx.spec.file)
        return ir.Source(name, tuple(full.items()), e.span, tuple((k, spans[k]) for k in spans))

    def text_columns(self, full: dict[str, Any], spans: dict[str, ir.Span], where: ir.Span) -> None:
        """A text column is neither the target nor a feature; the model takes the token ids of
        the text columns alone."""
        text = full.get("text")
        if text is None:
            return
        if not text:
            self.ctx.err(spans.get("text", where), "`text` names no column", 'e.g. text="review"')
            return
        for key in ("target", "features", "categorical"):
            both = [c for c in text if c in (full.get(key) or ())]
            if both:
                what = "the target" if key == "target" else f"listed in `{key}`"
                self.ctx.err(spans.get(key, where), f"column {show(both[0])} is a text column and also {what}",
                             "a text column is tokenized; name it in `text` only")
                return
        for key in ("features", "categorical"):
            if full.get(key):
                self.ctx.err(spans.get(key, where), f"a model of text columns takes their token ids alone; `{key}` "
                             "would add other columns", f"drop `{key}` (the columns besides the target and "
                             "`text` are not read)")

    def table_source(self, e: ir.Expr, spec: cat.SourceSpec) -> ir.Source | None:
        if not isinstance(e, ir.Call):
            self.ctx.err(e.span, "table needs columns: table(x=..., y=...)")
            return None
        cols: dict[str, ir.Expr] = {}
        for a in e.args:
            self.ctx.err(a.span, "table columns are named: table(x=..., y=...)")
        for k in e.kwargs:
            if k.name not in ("x", "y"):
                self.ctx.err(head(k.span, len(k.name)), f"table has no column `{k.name}`",
                         "columns: x (inputs) and y (targets)")
                continue
            for problem in validate_table(k.value, self.ctx.consts, set(cols)):
                self.ctx.absorb(problem)
            cols[k.name] = k.value
        for need in ("x", "y"):
            if need not in cols and not any(k.name == need for k in e.kwargs):
                self.ctx.err(e.span, f"table needs a `{need}=` column")
        return ir.Source("table", tuple(cols.items()), e.span)

    # ------------------------------------------------------------ train

    def check_train(self, section: ir.Section | None) -> ir.TrainConfig:
        if section is None:
            return ir.TrainConfig()
        s = self.ctx.settings(section, cat.TRAIN_SETTINGS)
        defaults = ir.TrainConfig()
        cfg: dict[str, Any] = {"span": section.span}
        if "loss" in s:
            cfg["loss"] = self.ctx.call_value(s["loss"].value, cat.LOSSES, "loss") or defaults.loss
            ls = cat.LOSSES.get(cfg["loss"].name)
            if ls is not None and ls.target == "unsupported":
                self.ctx.err(s["loss"].value.span, f"{ls.name} cannot be trained by netspec's loop: it {ls.doc}",
                         "the loop calls loss(model(x), y); choose a loss with one input and a target")
        if "optimizer" in s:
            cfg["optimizer"] = self.ctx.call_value(s["optimizer"].value, cat.OPTIMIZERS, "optimizer") or defaults.optimizer
        if "scheduler" in s and not isinstance(s["scheduler"].value, ir.NoneLit):
            cfg["scheduler"] = self.ctx.call_value(s["scheduler"].value, cat.SCHEDULERS, "scheduler")
        if "metrics" in s:
            v = s["metrics"].value
            items = v.items if isinstance(v, ir.ListLit) else (v,)
            cfg["metrics"] = tuple(m for m in (self.ctx.call_value(i, cat.METRICS, "metric") for i in items) if m)
            keys = [m.name if m.name != "top_k" else f"top_{m.get('k', 5)}" for m in cfg["metrics"]]
            for k in sorted({k for k in keys if keys.count(k) > 1}):
                self.ctx.err(v.span, f"metric `{k}` is listed twice")
        if "early_stopping" in s and not isinstance(s["early_stopping"].value, ir.NoneLit):
            cfg["early_stopping"] = self.ctx.call_value(s["early_stopping"].value, {"EarlyStopping": cat.EARLY_STOPPING},
                                                    "early-stopping rule", lambda params: params)
            es = cfg["early_stopping"]
            if es is not None and es.get("mode", "auto") != "auto":
                monitor = str(es.get("monitor", "val_loss"))
                natural = "min" if cat.lower_is_better(monitor) else "max"
                if es.get("mode") != natural:
                    self.ctx.warn(es.span, f"`mode=\"{es.get('mode')}\"` treats a {'lower' if natural == 'max' else 'higher'} "
                              f"`{monitor}` as better", f'`{monitor}` improves with mode="{natural}" (the default, '
                              'mode="auto", picks it)')
        if "log" in s:
            cfg["log"] = self.logs(s["log"])
        self.ctx.simple_settings(s, cat.TRAIN_SETTINGS, cfg, defaults)
        dev = cfg.get("device", "auto")
        if isinstance(dev, str) and not (dev in ("auto", "cpu", "cuda", "mps") or
                                         (dev.startswith("cuda:") and dev[5:].isdigit())):
            self.ctx.err(s["device"].value.span, f"unknown device `{dev}`", "devices: auto, cpu, cuda, cuda:N, mps")
        return ir.TrainConfig(**cfg)

    def logs(self, s: ir.Setting) -> tuple[str, ...]:
        try:
            v = evaluate(s.value, self.ctx.consts, symbols=True)
        except Exception:  # noqa: BLE001 - reported below as a type error
            v = None
        items = v if isinstance(v, tuple) else (v,)
        out = []
        for x in items:
            name = x.name if isinstance(x, ir.Symbol) else x
            if name not in cat.LOGS:
                self.ctx.err(s.value.span, f"unknown log `{show(x)}`",
                         did_you_mean(str(name), cat.LOGS) or "logs: " + ", ".join(cat.LOGS))
                return ir.TrainConfig().log
            out.append(name)
        return tuple(dict.fromkeys(out))

    # ------------------------------------------------------------ export

    def check_export(self, section: ir.Section | None) -> ir.ExportConfig:
        if section is None:
            return ir.ExportConfig()
        s = self.ctx.settings(section, cat.EXPORT_SETTINGS)
        cfg: dict[str, Any] = {"span": section.span}
        if "quantize" in s:
            cfg["quantize"] = self.quantization(s["quantize"])
            cfg["quantize_span"] = s["quantize"].value.span
        self.ctx.simple_settings(s, cat.EXPORT_SETTINGS, cfg, ir.ExportConfig())
        if cfg.get("quantize") == "int8" and cfg.get("opset", ir.ExportConfig().opset) < MIN_INT8_OPSET:
            self.ctx.err(s["quantize"].value.span,
                         f"quantize: int8 needs opset {MIN_INT8_OPSET} or later (per-channel weights in QDQ "
                         f"form); this section sets opset {cfg['opset']}",
                         f"raise `opset` to {MIN_INT8_OPSET} or more (the default is {ir.ExportConfig().opset})")
        if cfg.get("quantize", "none") == "none":
            for key in ("calibration", "max_metric_drop"):
                if key in s:
                    self.ctx.warn(s[key].key_span, f"`{key}` has no effect without `quantize: int8`")
        path = cfg.get("onnx")
        if path is not None:
            if "\0" in path or not path:
                self.ctx.err(s["onnx"].value.span, "not a usable file path")
                cfg.pop("onnx")
            elif path.endswith(("/", os.sep)):
                self.ctx.err(s["onnx"].value.span, f"`onnx` names a folder ({path}); give a file name",
                         f'e.g. onnx: "{path.rstrip("/")}/model.onnx"')
                cfg.pop("onnx")
            else:
                cfg["onnx"] = _resolve(path, self.ctx.spec.file)
        return ir.ExportConfig(**cfg)

    def quantization(self, s: ir.Setting) -> str:
        """`quantize: int8 | none` (a name or a string); anything else is an error listing both."""
        try:
            v = evaluate(s.value, self.ctx.consts, symbols=True)
        except NetspecError as e:
            self.ctx.absorb(e)
            return "none"
        name = "none" if v is None else v.name if isinstance(v, Symbol) else v
        if name in QUANTIZATIONS:
            return str(name)
        self.ctx.err(s.value.span, f"unknown quantization `{show(v)}`; allowed: {', '.join(QUANTIZATIONS)}",
                     "int8: a statically quantized copy of the model, calibrated and checked on the test "
                     "metric; none: fp32 only")
        return "none"


def _resolve(path: str, spec_file: str) -> str:
    """File arguments are relative to the spec's folder; `~` is the home folder."""
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(spec_file), path)
    return os.path.normpath(path)

