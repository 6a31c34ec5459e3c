"""The ejected program, assembled: constants, netspec's copied modules (layers, metrics,
augmentation and the training loop itself, train/loop.py), the model, the data, and the
small `main()` that wires them together; then checked output paths and the signed file.

In: ``ir.CheckedSpec`` (its data are read, as `netspec train` reads them). Out: the text of
the program (``eject``), written by ``write_program`` with a trailer hash so that only an
unedited earlier output is ever replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspec import __version__, ir
from netspec import catalogue as cat
from netspec.errors import NetspecError, Tell, error
from netspec.tools.eject import transfer
from netspec.tools.eject.data import DataWriter
from netspec.tools.eject.model import model_code
from netspec.tools.eject.source import Raw, const, copied_source, nondefault, py, same, wrap, wrap_code


class EjectError(NetspecError):
    pass


# ---------------------------------------------------------------- training settings as source


def _device_line(device: str) -> str:
    if device == "auto":
        return ('DEVICE = torch.device(  # as netspec picks `device: auto`\n'
                '    "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")')
    return f"DEVICE = torch.device({py(device)})"


def _loss_code(cfg: ir.CallValue) -> str:
    spec = cat.LOSSES[cfg.name]
    kwargs = dict(cfg.kwargs)
    args = []
    for p in spec.params:
        if p.name in kwargs and not same(kwargs[p.name], p.default):
            v = kwargs[p.name]
            args.append(f"{p.name}=torch.tensor({py(list(v))}, dtype=torch.float32)" if p.name in ("weight", "pos_weight")
                        and v is not None else f"{p.name}={py(v)}")
    return f"nn.{cfg.name}({', '.join(args)})"


def _optimizer_code(cfg: ir.CallValue, params: str = "model.parameters()") -> str:
    spec = cat.OPTIMIZERS[cfg.name]
    kwargs = dict(cfg.kwargs)
    args = [params, *nondefault(spec.params, kwargs, ("lr",))]
    from netspec.builder import takes_fused  # torch: eject reads torch signatures anyway

    if takes_fused(cfg):
        # netspec steps these optimizers with torch's fused kernels (same algorithm, faster on CPU)
        args.append("fused=FUSED")
    return f"torch.optim.{cfg.name}({', '.join(args)})"


def _scheduler_code(cfg: ir.CallValue | None) -> str:
    if cfg is None:
        return "None"
    spec = cat.SCHEDULERS[cfg.name]
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.kwargs}
    args = ["optimizer", *nondefault(spec.params, kwargs)]
    if cfg.name == "OneCycleLR" and kwargs.get("total_steps") is None:
        args = [a for a in args if not a.startswith("total_steps=")]
        args += ["epochs=epochs", "steps_per_epoch=steps_per_epoch"]
    return f"torch.optim.lr_scheduler.{cfg.name}({', '.join(args)})"


def _metrics_code(cfg: ir.TrainConfig) -> str:
    """netspec's MetricState (copied source) and the spec's metrics."""
    from netspec.train import metrics

    source = copied_source(metrics, ["MetricState", "metric_key"]).replace("ir.CallValue", "Metric")
    items = [f"Metric({', '.join([py(m.name), *[f'{k}={py(v)}' for k, v in m.kwargs]])})" for m in cfg.metrics]
    return "\n".join([
        "# ---------------------------------------------------------------- metrics (netspec's)",
        "",
        "",
        "class Metric:",
        '    """One entry of `metrics: [...]`: a name and its arguments."""',
        "",
        "    def __init__(self, name: str, **kwargs: Any) -> None:",
        "        self.name, self.kwargs = name, kwargs",
        "",
        "    def get(self, key: str, default: Any = None) -> Any:",
        "        return self.kwargs.get(key, default)",
        "",
        "",
        const("METRICS", Raw(items)),
        "",
        "",
        source,
        "",
        "",
        "def new_metrics() -> MetricState:",
        "    return MetricState(METRICS, TASK, LOSS_NAME, len(CLASSES) or None, DEVICE)",
    ])


# ---------------------------------------------------------------- the program's own glue
# (the loop is train/loop.py, copied; these wire it to tensors on DEVICE, files and argv)

BATCHES = '''
# ---------------------------------------------------------------- the program: batches, files, main


def on_device(x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A split's raw samples and encoded targets, whole on DEVICE."""
    x_t = torch.from_numpy(np.ascontiguousarray(x)).to(DEVICE)
    return x_t, None if y is None else torch.from_numpy(np.ascontiguousarray(y)).to(DEVICE)


def training_batches(x: torch.Tensor, y: torch.Tensor | None, epoch: int, batch_size: int) -> Iterator[Batch]:
    """One epoch's batches in epoch_order (a function of SEED and the epoch, as netspec's)."""
    order = epoch_order(len(x), SEED, epoch, SHUFFLE).to(DEVICE)
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        yield Batch(x.index_select(0, idx), None if y is None else y.index_select(0, idx))


def evaluation_batches(x: torch.Tensor, y: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    for start in range(0, len(x), EVAL_BATCH):
        yield x[start:start + EVAL_BATCH], None if y is None else y[start:start + EVAL_BATCH]
'''

FILES = '''
def save_together(objects: dict[Path, object]) -> None:
    """torch.save each to a temp file beside it, then rename them all: a kill or a full disk
    while saving never leaves half a file, and the files describe the same epoch."""
    temps = []
    try:
        for path, obj in objects.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append(tmp)
            data = io.BytesIO()  # Python writes it: a full disk is an OSError, not an enforce fail
            torch.save(obj, data)
            try:
                with open(tmp, "wb") as f:
                    f.write(data.getbuffer())
            except OSError as e:
                sys.exit(f"{path}: cannot write: {e.strerror}; the old files are kept")
        for tmp, path in zip(temps, objects, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save(loop: Loop, state: RunState, out: Path) -> None:
    """model.pt (the best epoch's weights, or the last) and checkpoint.pt, together."""
    keep = state.best_weights if SAVE == "best" and state.best_weights is not None else loop.model.state_dict()
    save_together({out / "model.pt": keep,
                   out / "checkpoint.pt": checkpoint_state(loop, state, torch.get_rng_state())})


def resume(loop: Loop, out: Path) -> RunState:
    path = out / "checkpoint.pt"
    if not path.is_file():
        sys.exit(f"{path}: no checkpoint to resume from; train without --resume first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = restore(loop, ckpt)
    torch.set_rng_state(ckpt["rng"])
    return state


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def make_loop(epochs: int, steps_per_epoch: int) -> Loop:
    """The model (built under SEED) and what trains it, set up as netspec sets them up."""
    model = build_model().to(DEVICE)
    autocast_dtype, scaler = mixed_precision(PRECISION, DEVICE)
    channels_last = DEVICE.type == "cuda" and autocast_dtype is not None and HAS_CONV  # as netspec
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    transform = InputTransform(SHIFT, DIV, AXIS, SOURCE_SHAPE, INPUT_SHAPE, TOKENS).to(DEVICE)
    optimizer = make_optimizer(model)
    return Loop(model, LOSS.to(DEVICE), transform, DEVICE, optimizer=optimizer,
                scheduler=make_scheduler(optimizer, epochs, steps_per_epoch), scaler=scaler, augment=make_augmenter(),
                seed=SEED, scale=SCALE, tokens=TOKENS, autocast_dtype=autocast_dtype, channels_last=channels_last,
                l1=L1, clip_grad_norm=CLIP_GRAD_NORM, closure=CLOSURE, reduction=REDUCTION,
                interval=SCHEDULER_INTERVAL)
'''

INTERRUPTED = '''
def interrupted(epoch: int, saved: bool) -> None:
    """Ctrl-C: where the run stands and the command that carries on (as `netspec train` says)."""
    command = shlex.join(["python", *sys.argv] + ([] if "--resume" in sys.argv else ["--resume"]))
    print(f"interrupted in epoch {epoch + 1}; " + (f"resume with:\\n    {command}" if saved else
          "nothing was saved yet: start again"), file=sys.stderr)
    sys.exit(130)
'''

MAIN = '''
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=positive, default=EPOCHS, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--out", type=Path, default=Path(OUT), help=f"output folder (default {OUT})")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    args = parser.parse_args()

    data = {split: on_device(x, y) for split, (x, y) in load_data().items()}
    x_train, y_train = data["train"]
    batch_size = len(x_train) if BATCH_SIZE is None else min(BATCH_SIZE, len(x_train))
    loop = make_loop(args.epochs, math.ceil(len(x_train) / batch_size))
    print(f"{MODEL_NAME}: {sum(p.numel() for p in loop.model.parameters()):,} parameters, "
          f"{len(x_train):,} training samples, device {DEVICE}")
    state = resume(loop, args.out) if args.resume else RunState()
    saved: list[int] = []

    def train(epoch: int) -> dict[str, float]:
        return train_epoch(loop, training_batches(x_train, y_train, epoch, batch_size), epoch, new_metrics())

    def validate() -> dict[str, float]:
        return evaluate(loop, evaluation_batches(*data["val"]), new_metrics())

    def end_of_epoch(row: dict[str, Any], stop: bool) -> None:
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
        if row["epoch"] % CHECKPOINT_EVERY == 0 or row["epoch"] == args.epochs or stop:
            save(loop, state, args.out)
            saved.append(row["epoch"])
        if stop:
            print(f"early stopping: `{MONITOR}` has not improved for {state.bad_epochs} "
                  f"epoch{'s' if state.bad_epochs != 1 else ''} "
                  f"(best {state.best_value:.4g} at epoch {state.best_epoch})")

    try:
        fit(loop, state, args.epochs, train, validate if "val" in data else None,
            Monitor(MONITOR, MINIMIZE, MIN_DELTA, PATIENCE), end_of_epoch)
    except NonFiniteLoss as e:
        sys.exit(str(e))
    except KeyboardInterrupt:
        interrupted(state.epoch, bool(saved) or args.resume)
    tested = f"last epoch {state.epoch} of {state.epoch}"
    if SAVE == "best" and state.best_weights is not None:
        loop.model.load_state_dict(state.best_weights)
        tested = f"best epoch {state.best_epoch} of {state.epoch} by {MONITOR}"
    if "test" in data:
        result = evaluate(loop, evaluation_batches(*data["test"]), new_metrics())
        print(f"test ({tested}): " + "  ".join(f"test_{k} {v:.4g}" for k, v in result.items()))
    if saved:
        print(f"weights saved in {args.out / 'model.pt'} (epoch {state.best_epoch if SAVE == 'best' else saved[-1]})")


if __name__ == "__main__":
    main()
'''
LOOP_ROOTS = ["Loop", "Batch", "RunState", "Monitor", "NonFiniteLoss", "epoch_order", "mixed_precision", "train_epoch",
              "evaluate", "fit", "checkpoint_state", "restore"]


TEXT_BATCHES = '''
# ---------------------------------------------------------------- the program: batches, files, main


def on_device(x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A split's token ids and encoded targets, whole on DEVICE."""
    x_t = torch.from_numpy(np.ascontiguousarray(x)).to(DEVICE)
    return x_t, None if y is None else torch.from_numpy(np.ascontiguousarray(y)).to(DEVICE)


def training_batches(x: torch.Tensor, y: torch.Tensor | None, epoch: int, batch_size: int) -> Iterator[Batch]:
    """One epoch's batches in epoch_order (a function of SEED and the epoch, as netspec's), each
    as wide as its longest text."""
    order = epoch_order(len(x), SEED, epoch, SHUFFLE)
    if BUCKET:  # `bucket: true`: texts of similar length together
        batches = length_buckets(order, (x != 0).sum(dim=1).cpu(), batch_size, SEED, epoch)
    else:
        batches = [order[start:start + batch_size] for start in range(0, len(x), batch_size)]
    for idx in batches:
        idx = idx.to(DEVICE)
        yield Batch(trim_padding(x.index_select(0, idx)), None if y is None else y.index_select(0, idx))


def evaluation_batches(x: torch.Tensor, y: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    for start in range(0, len(x), EVAL_BATCH):
        yield trim_padding(x[start:start + EVAL_BATCH]), None if y is None else y[start:start + EVAL_BATCH]
'''


def _loop_code(texts: bool = False) -> str:
    """netspec's training loop (train/loop.py), copied: the statements `netspec train` runs."""
    from netspec.train import loop

    roots = LOOP_ROOTS + (["trim_padding", "length_buckets"] if texts else [])
    return "# ---------------------------------------------------------------- training (netspec's loop)\n\n\n" + \
        copied_source(loop, roots)


def _text_code(pre: Any, data: ir.DataConfig) -> tuple[list[str], str]:
    """The constants and functions that tokenize the text columns as netspec does: the
    tokenizer learnt from the training split (data/text.py, copied), texts as padded ids."""
    from netspec.data import text
    from netspec.data.text import TokenizerSettings

    tok = data.tokenizer
    assert tok is not None
    settings = TokenizerSettings.from_call(tok.name, dict(tok.kwargs))
    constants = [
        f"TEXT_COLUMNS = {py(list(pre.text))}",
        f"TOKENIZER = {py((settings.kind, settings.lowercase, settings.min_freq, settings.size))}"
        f"  # kind, lowercase, min_freq, size: {settings.describe()}",
        f"MAX_LEN = {py(pre.max_len)}  # tokens kept per text" + ("" if data.max_len else " (the longest training text)"),
        f"BUCKET = {py(data.bucket)}  # training batches of texts of similar length",
    ]
    code = "\n\n\n".join([
        "# ---------------------------------------------------------------- texts (netspec's tokenizer, Hugging Face's)",
        copied_source(text, ["train_tokenizer", "encode_texts"]),
        "def learn_tokenizer(texts: list[list[str]]) -> Any:\n"
        '    """The tokenizer learnt from the training split (the cells of every text column), as netspec learns it."""\n'
        "    kind, lowercase, min_freq, size = TOKENIZER\n"
        "    return train_tokenizer([t for column in texts for t in column], kind, lowercase, min_freq, size, "
        "len(TEXT_COLUMNS))",
    ])
    return constants, code



def _doc_text(text: str) -> str:
    """Text safe inside a \"\"\"docstring\"\"\" (file names may hold backslashes, quotes, control
    characters and bytes that are not UTF-8: shown as escapes, as netspec prints them)."""
    from netspec.errors import printable

    return printable(text).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _header(checked: ir.CheckedSpec, out_name: str, source: str, overrides: tuple[str, ...]) -> str:
    texts = checked.model.padded
    import shlex

    spec_name = _doc_text(Path(source).name)
    out = _doc_text(out_name)
    run = _doc_text(shlex.quote(out_name))
    words = ["netspec eject", shlex.quote(source if len(source) < 90 else Path(source).name),
             *[f"--set {shlex.quote(o)}" for o in overrides], "-o", shlex.quote(out_name)]
    lines, line = [], ""
    for w in words:  # shell continuation lines, each short enough for the line-length rule
        if line and len(line) + len(w) > 100:
            lines.append(line + " \\")
            line = "        "
        line = f"{line} {w}" if line.strip() else line + w
    lines.append(line)
    command = _doc_text("\n    ".join(lines))
    return f'''"""{out}: the {checked.model.name} model of {spec_name}, as a standalone PyTorch program.

Written by netspec {__version__} with

    {command}

It imports torch and numpy{", and Hugging Face `tokenizers` for the text columns" if texts else ""}, never
netspec. It builds the same model under the same seed, reads and splits the same data,
preprocesses, augments, trains, evaluates and checkpoints as `netspec train` does on one device,
and ends with the same weights on the CPU. The training split's statistics and vocabularies are
written in below (netspec computed them when it wrote this file){_text_note(texts)}.

    python {run}                  # train; writes {_doc_text(Path(out_name).stem)}_out/model.pt and checkpoint.pt
    python {run} --epochs 1       # a quick run
    python {run} --resume         # continue from the checkpoint
"""
'''


def _text_note(texts: bool) -> str:
    if not texts:
        return ""
    return ("; the tokenizer is learnt\nfrom the training split's texts at the start, as netspec learns it, and the texts are\n"
            "padded per batch to the longest one")


def eject(checked: ir.CheckedSpec, out_name: str = "train.py", source: str | None = None,
          overrides: tuple[str, ...] = (), tell: Tell | None = None) -> str:
    """The program text for `checked` (its data are read, as `netspec train` would); `source`
    and `overrides` are the spec and --set values as the user gave them (for the docstring).
    What reading the data said (image folders' warnings, a cache built) goes to `tell`."""
    from netspec import layers
    from netspec.data.prepare import prepare, reading_lines

    if checked.data is None or checked.data.train is None:
        raise error(f"{checked.spec.file}: eject needs a data section with a `train:` source",
                    'add e.g. data { train: mnist(split="train") }')
    cfg = checked.train
    if cfg.compile:
        raise error("eject: `compile: true` is not written into the program", "remove it; eager training is exact")
    prepared = prepare(checked, allow_download=False)
    if tell is not None:
        for line in reading_lines(prepared):
            tell(line)
    from netspec.train.preflight import check_before_training, monitor_of, patience_of

    check_before_training(checked, prepared)  # what `netspec train` would refuse, the program must not start
    pre = prepared.pre
    env = {k: v for k, v in checked.constants if isinstance(v, (int, float)) and not isinstance(v, bool)}
    model_text, own = model_code(checked.model)
    scaled = pre.target_shift is not None  # normalize_target: the loop scales targets with TargetScale
    own_classes = copied_source(layers, [*own, "InputTransform", *(["TargetScale"] if scaled else [])])
    dw = DataWriter(checked, pre, env)
    data = checked.data
    train_src = data.train
    assert train_src is not None  # checked above
    train_fn = dw.source(train_src, "train", "SEED")
    test_fn = dw.source(data.test, "test", "SEED + 1") if data.test is not None else None
    es = cfg.early_stopping
    monitor, minimize = monitor_of(checked, prepared.val is not None)
    sched = cfg.scheduler
    interval = cat.SCHEDULERS[sched.name].interval if sched else None
    classes = list(pre.classes) if pre.classes else []
    constants = [
        f"MODEL_NAME = {py(checked.model.name)}",
        f"SEED = {py(cfg.seed)}",
        f"EPOCHS = {py(cfg.epochs)}",
        f"BATCH_SIZE = {py(data.batch_size)}  # None: the whole training split in one batch",
        f"SHUFFLE = {py(data.shuffle)}",
        "EVAL_BATCH = 2048",
        _device_line(cfg.device),
        f"PRECISION = {py(cfg.precision)}",
        *(['FUSED = DEVICE.type in ("cpu", "cuda")  # netspec steps SGD/Adam/AdamW/Adagrad with the fused kernels']
          if "fused=FUSED" in _optimizer_code(cfg.optimizer) else []),
        f"HAS_CONV = {py(any(n.type.startswith('Conv') for n in ir.layers(checked.model.root)))}"
        "  # channels_last under autocast on CUDA, as netspec",
        f"OUT = {py(Path(out_name).stem + '_out')}",
        "",
        "# preprocessing learnt from the training split (netspec computed these from the same data)",
        f"TASK = {py(pre.task)}",
        const("CLASSES", classes),
        f"SOURCE_SHAPE = {py(list(pre.source_shape))}  # one raw sample",
        f"INPUT_SHAPE = {py([d for d in checked.model.input_shape])}  # the model's input (None: variable)",
        f"SCALE = {py(pre.scale)}  # raw uint8 images are divided by this",
        f"TOKENS = {py(pre.tokens)}",
        const("SHIFT", pre.shift, f"normalize: {pre.normalize}"),
        const("DIV", pre.div),
        f"AXIS = {py(pre.axis)}",
        *([const("TARGET_SHIFT", pre.target_shift, f"normalize_target: {pre.target_normalize} (the loss sees "
                 "(y - TARGET_SHIFT) / TARGET_DIV; metrics are in the target's units)"),
           const("TARGET_DIV", pre.target_div)] if scaled else []),
    ]
    if pre.columns:
        constants.append(const("FEATURE_COLUMNS", [list(c) + ([] if len(c) > 2 else [None]) for c in pre.columns],
                                "CSV feature columns in input order: name, kind, the training split's categories"))
    texts = pre.kind == "text"
    text_constants, text_code = _text_code(pre, data) if texts else ([], "")
    constants += text_constants
    if train_src.kind == "image_folder":
        from netspec.data.prepare import image_geometry

        size, channels = image_geometry(checked)
        constants += [f"IMAGE_SIZE = {py(list(size or ()))}", f"CHANNELS = {py(channels)}",
                      f"SKIP_BAD = {py(data.skip_bad)}  # skip_bad: unreadable images are skipped with a warning"]
    constants += [
        "",
        "# training",
        f"LOSS = {_loss_code(cfg.loss)}",
        f"REDUCTION = {py(str(dict(cfg.loss.kwargs).get('reduction', 'mean')))}",
        f"CLOSURE = {py(cat.OPTIMIZERS[cfg.optimizer.name].closure)}",
        f"L1 = {py(cfg.l1)}",
        f"CLIP_GRAD_NORM = {py(cfg.clip_grad_norm)}",
        f"SCHEDULER_INTERVAL = {py(interval)}",
        f"LOSS_NAME = {py(cfg.loss.name)}",
        f"MONITOR = {py(monitor)}  # early stopping and the best epoch",
        f"MINIMIZE = {py(minimize)}",
        f"MIN_DELTA = {py(float(es.get('min_delta', 0.0)) if es else 0.0)}",
        f"PATIENCE = {py(patience_of(es))}  # early stopping's (None: none)",
        f"SAVE = {py(cfg.save)}  # model.pt holds the best epoch's weights, or the last",
        f"CHECKPOINT_EVERY = {py(cfg.checkpoint_every)}",
    ]
    data_fns = dw.functions
    load = ["def load_data() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:",
            '    """train / val / test: raw samples (uint8 images or numbers) and encoded targets."""',
            f"    x, y = {train_fn}()",
            "    y = encode_targets(y)",
            "    train, val, test = split_rows(len(x), y)",
            "    out = {\"train\": (x[train], None if y is None else y[train])}",
            "    if len(val):",
            "        out[\"val\"] = (x[val], None if y is None else y[val])",
            "    if len(test):",
            "        out[\"test\"] = (x[test], None if y is None else y[test])"]
    if texts:  # the tokenizer is learnt from the training split, then every text is encoded
        load = load[:2] + [f"    texts, y = {train_fn}()",
                           "    y = encode_targets(y)",
                           "    train, val, test = split_rows(len(texts[0]), y)",
                           "    tokenizer = learn_tokenizer([[column[i] for i in np.sort(train)] for column in texts])",
                           "    x, _ = encode_texts(tokenizer, texts, MAX_LEN)"] + load[5:]
        load[1] = '    """train / val / test: texts as token ids (padded with 0) and encoded targets."""'
    if test_fn:
        load += [f"    tx, ty = {test_fn}()", "    out[\"test\"] = (tx, encode_targets(ty))"]
        if texts:
            load[-2:] = [f"    test_texts, ty = {test_fn}()",
                         "    out[\"test\"] = (encode_texts(tokenizer, test_texts, MAX_LEN)[0], encode_targets(ty))"]
    load.append("    return out")
    augment = _augment_code(checked, pre)
    imports = IMPORTS
    parts = [
        _header(checked, out_name, source or checked.spec.file, overrides),
        "\n".join(imports) + "\n\n" + "\n".join(constants),
        "# ---------------------------------------------------------------- netspec's own modules (its source)",
        own_classes,
        "# ---------------------------------------------------------------- the model",
        model_text,
        "def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:\n"
        + wrap_code(f"    return {_optimizer_code(cfg.optimizer, transfer.optimizer_params(checked))}"),
        "def make_scheduler(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):\n"
        + wrap_code(f"    return {_scheduler_code(sched)}"),
        "# ---------------------------------------------------------------- data",
        *dw.readers,
        *([dw.tables.helpers()] if dw.tables.used else []),
        *data_fns,
        *([text_code] if texts else []),
        dw.targets_code(),
        dw.split_code(),
        "\n".join(load),
        augment,
        _metrics_code(cfg),
        _loop_code(texts),
        *([transfer.code(checked), "\n".join(transfer.constants(checked)).strip("\n")] if transfer.used(checked)
          else []),
        TEXT_BATCHES if texts else BATCHES,
        INTERRUPTED,
        FILES.replace("interval=SCHEDULER_INTERVAL)", "interval=SCHEDULER_INTERVAL, "
                      "target=TargetScale(TARGET_SHIFT, TARGET_DIV).to(DEVICE))" if scaled else
                      "interval=SCHEDULER_INTERVAL)"),
        MAIN,
    ]
    text = "\n\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    if transfer.used(checked):
        text = transfer.glue(text, checked)
    return _prune_imports(text)


IMPORTS = [
    "from __future__ import annotations", "",
    "import argparse", "import contextlib", "import csv", "import gzip", "import hashlib", "import io",
    "import itertools", "import math", "import os", "import re", "import shlex", "import sys", "import tempfile",
    "import time",
    "from collections import OrderedDict",
    "from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence",
    "from dataclasses import dataclass, field", "from pathlib import Path", "from typing import Any, NamedTuple", "",
    "import numpy as np", "import torch", "import torch.nn.functional as F", "from torch import nn",
]


def _prune_imports(text: str) -> str:
    """Drop the names of IMPORTS that the program never uses (read from its syntax tree)."""
    import ast

    tree = ast.parse(text)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    kept = []
    for line in IMPORTS:
        if not line or line.startswith("from __future__"):
            kept.append(line)
            continue
        if line.startswith("from "):
            head, _, names = line.partition(" import ")
            alive = [n for n in names.split(", ") if n in used]
            if alive:
                kept.append(f"{head} import {', '.join(alive)}")
            continue
        name = line.rsplit(" ", 1)[-1].split(".")[0]
        if name in used:
            kept.append(line)
    block = "\n".join(kept).replace("\n\n\n", "\n\n")
    return text.replace("\n".join(IMPORTS), block, 1)


def _augment_code(checked: ir.CheckedSpec, pre: Any) -> str:
    data = checked.data
    if data is None or not data.augment:
        return "def make_augmenter():\n    return None  # no augment: in the spec"
    from netspec.data import augment

    names = sorted({a.name for a in data.augment})
    ops = [(a.name, dict(a.kwargs)) for a in data.augment]
    roots = ["Augmenter", *[f"_{n}" for n in names]]
    source = copied_source(augment, roots + ["SettingError", "_image_shape"],
                           exclude=("OPS", "AUGMENTS", "REQUIRED", "ATTEMPTS", "GRAY"))
    params = {n: [(p.name, p.default if p.default is not cat.REQUIRED else None) for p in cat.AUGMENTS[n].params]
              for n in names}
    shim = [
        "# ---------------------------------------------------------------- augmentation (netspec's, batched)",
        f"ATTEMPTS = {py(augment.ATTEMPTS)}",
        f"GRAY = {py(augment.GRAY)}",
        "AUG_PARAMS = {  # each op's parameters and defaults, as netspec's catalogue has them",
        *[wrap(f"    {py(n)}: ", py(v), ",") for n, v in params.items()],
        "}",
        "Shape = tuple",
        "Draws = dict",
        "",
        "",
        "class _Row:  # the parameter list of one op, as netspec's catalogue holds it",
        "    def __init__(self, names):",
        "        self.params = [type('P', (), {'name': n, 'default': d})() for n, d in names]",
        "",
        "",
        "AUGMENTS = {name: _Row(names) for name, names in AUG_PARAMS.items()}",
        "",
        "",
        source,
        "",
        "",
        "OPS = {" + ", ".join(f"{py(n)}: _{n}" for n in names) + "}",
        "",
        "",
        "def make_augmenter():",
        "    return Augmenter([",
        *[wrap(f"        ({py(n)}, ", py(kw), "),", 12) for n, kw in ops],
        "    ], tuple(SOURCE_SHAPE))",
    ]
    text = "\n".join(shim)
    if "_make_op" not in source:
        raise error("eject: the augmentation code has changed shape; cannot copy it")
    return text


TRAILER = "# netspec eject: sha256 "  # + the hash of every line above it: the file is eject's, unedited
MAX_PROGRAM_BYTES = 16 << 20


def _sign(text: str) -> str:
    from netspec.outputs import sign_text

    return sign_text(text, TRAILER)


def _is_unedited_output(path: str) -> bool:
    """The file ends with eject's trailer and its hash matches what is above it."""
    from netspec.outputs import is_signed, read_bounded

    data = read_bounded(path, MAX_PROGRAM_BYTES)
    return data is not None and is_signed(data, TRAILER)


def check_output(output: str, inputs: list[str]) -> None:
    """Only a NAME.py file; never a folder, an input, or an existing file other than an
    unedited earlier output of netspec eject (an empty file may be replaced)."""
    import os

    from netspec.outputs import Refusals, check_output_file, check_replaceable

    name = Path(output).name
    if Path(output).suffix != ".py" or name.startswith("."):
        raise error(f"{output or repr(output)}: an ejected program is a file NAME.py",
                    f"e.g. -o {Path(output).stem.lstrip('.') or 'train'}.py")
    check_output_file(output, "train.py")  # a folder, under a file, a link to nowhere
    if not os.path.lexists(output):
        return

    check_replaceable(output, inputs, _is_unedited_output, Refusals(
        "{output}: that is the input; netspec eject never overwrites it", "choose another -o",
        "{output}: not a regular file; netspec eject writes only files",
        "{output} exists and is not an unedited program of netspec eject (it was edited, or is another file); "
        "it is not overwritten", "choose another -o, or remove the file first"))


def write_program(checked: ir.CheckedSpec, output: str, inputs: list[str], source: str | None = None,
                  overrides: tuple[str, ...] = (), tell: Tell | None = None) -> str:
    from netspec.util import atomic_write_text, ensure_folder

    check_output(output, inputs)
    text = _sign(eject(checked, Path(output).name, source, overrides, tell))
    parent = Path(output).parent
    if str(parent) not in ("", "."):
        ensure_folder(parent)
    atomic_write_text(output, text)
    return text