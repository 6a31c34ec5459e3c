"""The `netspec` command (click). Catches NetspecError, prints it, exits 1; usage errors
exit 2; never a traceback (set NETSPEC_DEBUG=1 to see one for an internal error).

    netspec check examples/mnist.net
    netspec summary examples/mnist.net
    netspec train examples/mnist.net --epochs 1
    netspec export examples/mnist.net -o mnist.onnx
    netspec predict mnist.onnx digit.png
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from netspec.errors import NetspecError, printable, shell_command


def _fail(message: str, code: int = 1) -> None:
    if os.environ.get("RANK", "0") in ("", "0"):  # under DDP only the first process speaks
        click.echo(message, err=True)
    sys.exit(code)


class _Terminal:
    """stdout or stderr as netspec writes them: every text goes through errors.printable
    (a class name from a downloaded model, a folder name or a spec string cannot move the
    cursor, erase a line or reorder text, and an undecodable byte of a file name is shown as
    `\\xe9` instead of failing), and the stream survives its reader going away (`netspec
    layers | head -1`, a training run piped into `head`): after a BrokenPipeError the rest of
    the output is discarded and the command carries on (a training run finishes its epochs
    and writes its files). Progress bars write to `raw` (their own carriage returns)."""

    @property
    def buffer(self) -> Any:
        """The binary stream underneath, for bytes that are a protocol (`netspec lsp`'s
        JSON-RPC), never for text: click writes text through write(), as its encoding is
        the stream's."""
        return self._stream.buffer

    def __init__(self, stream: Any):
        self.raw = stream
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                self._stream.write(printable(text))
            except BrokenPipeError:
                self._divert()
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._divert()

    def _divert(self) -> None:
        self._broken = True
        try:  # point the descriptor at /dev/null so the interpreter's own final flush is quiet
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NetspecError as e:
            if e.diagnostics:
                _fail(e.render(), 1)
            sys.exit(1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except MemoryError:
            _fail("netspec: out of memory", 1)
        except OSError as e:  # the environment, not netspec: a full disk, permissions, a vanished file
            if os.environ.get("NETSPEC_DEBUG"):
                raise
            from netspec.util import FULL, write_error

            what = e.filename or ""
            if e.errno in FULL:
                _fail(write_error(what or "?", e).render(), 1)
            _fail(f"error: {what + ': ' if what else ''}{e.strerror or e}", 1)
        except Exception as e:  # noqa: BLE001 - last line of defence: no tracebacks for users
            if os.environ.get("NETSPEC_DEBUG"):
                raise
            _fail(f"netspec: internal error: {type(e).__name__}: {e}\n"
                  "this is a bug in netspec; rerun with NETSPEC_DEBUG=1 for details", 3)

    return wrapper


def _no_nul(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Paths with a NUL byte are usage errors (the OS cannot even be asked about them)."""
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, str) and "\0" in v:
            raise click.BadParameter("a path cannot contain a NUL byte")
    return value


def _tell(message: str) -> None:
    """A note a library function handed over while it works (errors.Tell): stderr."""
    click.echo(message, err=True)


def _spec(path: str) -> str:
    """A spec argument: the file, else the packaged example of that name."""
    from netspec.tools.packaged import resolve_spec

    return resolve_spec(path, _tell)


SET_OPTION = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="override a setting, e.g. --set train.epochs=1 or --set hidden=256")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="netspec")
def main() -> None:
    """netspec: declarative model specs for PyTorch.

    \b
      netspec check mnist.net          # errors at file:line:col with a fix
      netspec summary mnist.net        # layers, output shapes, parameters
      netspec train mnist.net          # a spec here, else the packaged example
      netspec export model.onnx        # the latest finished run, verified
      netspec predict model.onnx digit.png
      netspec tune mnist.net            # the search section's values (Optuna)
    """
    if not isinstance(sys.stdout, _Terminal):
        sys.stdout = _Terminal(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Terminal):
        sys.stderr = _Terminal(sys.stderr)  # type: ignore[assignment]


@main.command()
@click.argument("files", nargs=-1, required=True, callback=_no_nul)
@click.option("--json", "as_json", is_flag=True, help="diagnostics as JSON lines (for editors)")
@click.option("--target", type=click.Choice(["onnx"]), help="also check that every layer can be exported")
@click.option("--no-data", is_flag=True, help="do not open the data files (by default their headers are read); a weights file is still read")
@SET_OPTION
@handle_errors
def check(files: tuple[str, ...], as_json: bool, target: str | None, no_data: bool, overrides: tuple[str, ...]) -> None:
    """Check specs: syntax, names, arguments, shapes, lints, and the data against the model.

    \b
      netspec check mnist.net
      netspec check --json --target onnx model.net
    """
    from netspec import load
    from netspec.ir import parameter_count

    failed = False
    for f in files:
        try:
            checked = load(_spec(f), overrides, target, read_data=not no_data) if not no_data else \
                _load_with_weights(_spec(f), overrides, target)  # a weights file is no data: its header is read
        except NetspecError as e:
            failed = True
            if as_json:
                for d in e.diagnostics:
                    click.echo(json.dumps(d.to_json()))
            else:
                click.echo(e.render(), err=True)
            continue
        m = checked.model
        if as_json:  # one object per file that checks: what `ok` says, and its warnings
            click.echo(json.dumps({"file": f, "ok": True, "model": m.name, "input_shape": list(m.input_shape),
                                   "output_shape": list(m.output_shape), "parameters": parameter_count(m.root),
                                   "warnings": [w.to_json() for w in checked.warnings]}))
            continue
        for w in checked.warnings:
            click.echo(w.render(), err=True)
        from netspec.catalogue import fmt_shape
        from netspec.util import count

        click.echo(f"{f}: ok: model `{m.name}` {fmt_shape(m.input_shape)} -> {fmt_shape(m.output_shape)}, "
                   f"{count(parameter_count(m.root), 'parameter')}")
    if failed:
        sys.exit(1)


def _named_output(output: str | None, example: str) -> None:
    """`-o ''` (or blanks) is a usage error, not "use the default" (export, diagram, eject)."""
    if output is not None and not output.strip():
        raise click.BadParameter(f"give a file name, e.g. -o {example}", param_hint="'-o' / '--output'")


def _spec_or_run(path: str) -> str:
    """A spec file, a packaged example's name, or a run folder (its spec.net)."""
    from pathlib import Path

    from netspec.train.runs import run_spec

    return str(run_spec(Path(path))) if os.path.isdir(path) else _spec(path)


@main.command()
@click.argument("file", callback=_no_nul)
@SET_OPTION
@handle_errors
def summary(file: str, overrides: tuple[str, ...]) -> None:
    """Layer table: name, type, output shape, parameters (no torch needed).

    \b
      netspec summary mnist.net
      netspec summary runs/mnist_cnn       # the spec a run was trained with
    """
    from netspec.tools.summary import summary_text

    click.echo(summary_text(_load_with_weights(_spec_or_run(file), overrides)))


def _load_with_weights(spec: str, overrides: tuple[str, ...], target: str | None = None):  # noqa: ANN202
    """The checked spec, its weights file's keys and shapes checked too (a header read, no
    data): `check --no-data` says ok only if the weights load, and summary and diagram mark
    layers "pretrained", which must mean they load."""
    from netspec import load
    from netspec.checker.transfer import check_weights_file

    checked = load(spec, overrides, target)
    problems = check_weights_file(checked)
    if problems:
        raise NetspecError(problems + list(checked.warnings))
    return checked


@main.command("fmt")
@click.argument("files", nargs=-1, required=True, callback=_no_nul)
@click.option("--check", "check_only", is_flag=True, help="exit 1 if a file is not formatted; change nothing")
@handle_errors
def fmt(files: tuple[str, ...], check_only: bool) -> None:
    """Rewrite specs in canonical layout (comments kept; the file's mode and links kept).

    \b
      netspec fmt model.net
      netspec fmt --check examples/*.net
    """
    from netspec.syntax.format import format_text
    from netspec.syntax.parser import read_spec_text
    from netspec.util import atomic_write_text

    unformatted = []
    for f in files:
        text = read_spec_text(f)
        out = format_text(text, f)
        if out != text:
            unformatted.append(f)
            if not check_only:
                atomic_write_text(f, out)
                click.echo(f"formatted {f}")
    if check_only and unformatted:
        for f in unformatted:
            click.echo(f"would reformat {f}", err=True)
        sys.exit(1)


@main.command("lsp")
@click.option("--stdio", is_flag=True, help="talk over stdin/stdout (the default and only transport)")
@click.option("--debounce-ms", type=click.IntRange(0, 10_000), default=300, show_default=True,
              help="pause in typing before a changed document is checked again")
@handle_errors
def lsp(stdio: bool, debounce_ms: int) -> None:
    """Language server for editors: check's diagnostics as you type, shapes on hover and inline.

    \b
      netspec lsp                 # started by the editor; see docs/editors.md
    """
    try:
        from netspec.tools.lsp.server import serve
    except ImportError as e:
        from netspec.errors import error

        raise error(f"netspec lsp needs pygls: {e}", "pip install 'pygls>=2,<3'") from None
    serve(debounce_ms / 1000)


@main.command("ir")
@click.argument("file", callback=_no_nul)
@click.option("--checked", is_flag=True, help="dump the checked IR (resolved layers and shapes)")
@handle_errors
def ir_cmd(file: str, checked: bool) -> None:
    """Print the stable IR dump (used by golden tests)."""
    from netspec import ir, load, parse_file

    if checked:
        c = load(_spec(file))
        click.echo(ir.dump(c.model))
    else:
        click.echo(ir.dump(parse_file(_spec(file))))


@main.command()
@click.argument("name", required=False)
@click.option("--category", help="only layers of this category")
@handle_errors
def layers(name: str | None, category: str | None) -> None:
    """List the catalogue's layers, or show one entry's arguments.

    \b
      netspec layers
      netspec layers Conv2d
      netspec layers --category attention
    """
    from netspec import catalogue as cat
    from netspec.errors import did_you_mean, error

    if name:
        for kind, table in cat.ALL_KINDS.items():
            if name in table:
                row = table[name]
                click.echo(f"{name} ({kind})")
                if getattr(row, "doc", ""):
                    click.echo(f"  {row.doc}")
                for p in row.params:
                    default = "" if p.default is cat.REQUIRED else f" = {p.default!r}"
                    tag = "  (inferred from the input shape)" if p.inferred else ""
                    dom = f", {cat.describe_domain(p.domain)}" if p.domain else ""
                    click.echo(f"  {p.name}: {cat.describe_type(p.type)}{dom}{default}{tag}")
                if kind == "layer":
                    click.echo(f"  input: {row.expects}; ONNX: {'yes' if row.onnx else 'no'}"
                               + (f" ({row.onnx_note})" if row.onnx_note else ""))
                return
        names = [n for t in cat.ALL_KINDS.values() for n in t]
        raise error(f"unknown name `{name}`", did_you_mean(name, names))
    categories = sorted({row.category for row in cat.LAYERS_LIST})
    if category and category not in categories:
        raise error(f"unknown category `{category}`", "categories: " + ", ".join(categories))
    width = max(len(n) for n in cat.LAYERS)
    for row in cat.LAYERS_LIST:
        if category and row.category != category:
            continue
        args = ", ".join(p.name + ("*" if p.inferred else "") for p in row.params)
        click.echo(f"{row.name:<{width}}  {row.category:<13} ({args})")
    if not category:
        click.echo("\n* inferred from the incoming shape; `netspec layers NAME` for details", err=True)


@main.command()
@handle_errors
def examples() -> None:
    """List the packaged examples (usable by name from any folder: `netspec train mnist.net`)."""
    from netspec.tools.packaged import describe, examples_dir, packaged_examples

    found = packaged_examples()
    root = examples_dir()
    width = max((len(n) for n in found), default=0)
    for name, path in found.items():
        where = path.relative_to(root) if root else path
        click.echo(f"{name:<{width}}  {describe(path)}  ({where})")
    click.echo("\n`netspec new NAME` copies one here; `netspec train NAME.net` uses it directly", err=True)


@main.command()
@click.argument("name")
@click.option("-o", "--output", callback=_no_nul, help="file to create (default ./NAME.net); never overwritten")
@handle_errors
def new(name: str, output: str | None) -> None:
    """Copy a packaged example here (or start a new spec from a template).

    \b
      netspec new mnist              # -> ./mnist.net
      netspec new resnet18 -o r.net
      netspec new my_model           # a template for a new model
    """
    from netspec.tools.packaged import new_spec

    target = new_spec(name, output)
    click.echo(f"wrote {target}; next: {shell_command('netspec', 'check', str(target))}")


@main.command()
@click.argument("file", callback=_no_nul)
@SET_OPTION
@click.option("--epochs", type=click.IntRange(min=1), help="shorthand for --set train.epochs=N")
@click.option("--device", help="auto | cpu | cuda | cuda:N | mps")
@click.option("--out", "out_dir", callback=_no_nul, help="run folder (default runs/<model>)")
@click.option("--resume", is_flag=True, help="continue from the run folder's checkpoint.pt")
@click.option("--quiet", is_flag=True, help="no progress bar; a line every 10% of the epochs and the result")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per epoch on stdout")
@click.option("--tensorboard", is_flag=True, help="also log to TensorBoard (as `log: [csv, tensorboard]`)")
@click.option("--nproc", type=click.IntRange(min=1), help="processes on this machine (DDP via torchrun)")
@click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True, help="machines in the job")
@click.option("--node-rank", type=click.IntRange(min=0), default=0, show_default=True, help="this machine's index")
@click.option("--master-addr", help="address of node 0 (several machines)")
@click.option("--master-port", type=click.IntRange(1, 65535), help="port on node 0 (default 29500)")
@handle_errors
def train(file: str, overrides: tuple[str, ...], epochs: int | None, device: str | None, out_dir: str | None,
          resume: bool, quiet: bool, as_json: bool, tensorboard: bool, nproc: int | None, nnodes: int,
          node_rank: int, master_addr: str | None, master_port: int | None) -> None:
    """Train the model; writes runs/<model>/ (weights, checkpoint, metrics, curves).

    \b
      netspec train mnist.net                      # here, or the packaged example
      netspec train mnist.net --epochs 1 --set data.subset=6000
      netspec train mnist.net --resume --set train.epochs=8
      netspec train resnet.net --nproc 4           # 4 processes (GPUs, or CPU with gloo)
      netspec train resnet.net --nproc 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1
      torchrun --nproc-per-node 4 -m netspec train resnet.net   # the same, by hand
    """
    extra = list(overrides)
    if tensorboard:
        extra.append("train.log=[csv, tensorboard]")
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if device is not None:
        if not re.fullmatch(r"[A-Za-z0-9:_-]+", device):
            raise click.BadParameter(f"{device!r} is not a device; auto, cpu, cuda, cuda:N or mps",
                                     param_hint="'--device'")
        extra.append(f'train.device="{device}"')
    if nproc is None and (nnodes != 1 or node_rank or master_addr or master_port):
        raise click.UsageError("--nnodes, --node-rank, --master-addr and --master-port launch processes: give --nproc "
                               "(processes on this machine) too")
    if node_rank >= nnodes:
        raise click.BadParameter(f"{node_rank} is not below --nnodes {nnodes} (machines are numbered from 0)",
                                 param_hint="'--node-rank'")
    if nproc is not None and "WORLD_SIZE" not in os.environ:
        from netspec import load
        from netspec.train.distributed import launch, strip_launcher_args
        from netspec.train.preflight import check_launch

        # a spec, data or device error once, before N processes start
        checked = load(_spec(file), tuple(extra), read_data=True)
        check_launch(checked, nproc)
        if checked.weights is not None and not resume:  # a torchvision download once, not once per process
            from netspec.train.transfer import weights_path

            weights_path(checked.weights, _tell)
        argv = strip_launcher_args(sys.argv[1:])
        code = launch(argv, nproc, nnodes, node_rank, master_addr, master_port)
        if code:
            _fail(f"the distributed job failed (exit status {code}); the first failing process's message is above",
                  1 if code != 130 else 130)
        return
    from netspec.errors import TrainingInterrupted
    from netspec.train.trainer import train_file

    try:
        train_file(_spec(file), tuple(extra), out_dir=out_dir, resume=resume, quiet=quiet, as_json=as_json)
    except TrainingInterrupted as e:
        _fail(_interrupted(e), 130)


def _interrupted(e: Any) -> str:
    """What Ctrl-C during `netspec train` leaves, and the exact command that carries on."""
    import shlex

    args = sys.argv[1:]
    if "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", e.run]  # the same folder, whatever runs/ holds by the next time
    if not e.checkpointed:
        return (f"interrupted before the first checkpoint: nothing to resume; start again with:\n"
                f"    {shlex.join(['netspec', *[a for a in args if a != '--resume']])}")
    if "--resume" not in args:
        args.append("--resume")
    return (f"interrupted at epoch {e.epoch + 1}; {e.run}/checkpoint.pt holds the last checkpoint; resume with:\n"
            f"    {shlex.join(['netspec', *args])}")


@main.command()
@click.argument("file", callback=_no_nul)
@click.option("--trials", type=click.IntRange(min=1), help="trials to finish (default: the search section's `trials`)")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="worker processes on this machine sharing the study")
@click.option("--storage", metavar="URL", help="a database shared by many machines, e.g. postgresql://user@host/db "
              "(default: a journal file in the tune folder)")
@click.option("--out", "out_dir", callback=_no_nul, help="the tune folder (default runs/<model>-tune)")
@click.option("--study", "study_name", help="the study's name in the storage (default: the model's name)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per trial, then the summary")
@SET_OPTION
@handle_errors
def tune(file: str, trials: int | None, workers: int, storage: str | None, out_dir: str | None,
         study_name: str | None, as_json: bool, overrides: tuple[str, ...]) -> None:
    """Search the values of the spec's `search` section (Optuna); every trial is a run folder.

    Running the same command again continues a stopped or killed study. Writes
    runs/<model>-tune/: trial-NNN/ run folders, trials.csv, best.net, tune.png.

    \b
      netspec tune iris_search.net
      netspec tune iris_search.net --trials 30 --workers 2
      netspec tune iris_search.net --storage postgresql://me@db-host/studies   # on each machine
    """
    from netspec.tools.tune import TuneInterrupted, tune_file
    from netspec.tools.tune.report import summary_text

    if storage is not None and not storage.strip():
        raise click.BadParameter("give a database URL, e.g. postgresql://user@host/db", param_hint="'--storage'")
    try:
        result = tune_file(_spec(file), overrides, trials, workers, storage, out_dir, study_name, as_json, click.echo)
    except TuneInterrupted as stop:
        s = stop.summary
        if as_json:
            click.echo(json.dumps({"interrupted": True, "summary": s}))
        else:
            click.echo(summary_text(s))
        retry = f"; trial{'s' if len(stop.stopped) > 1 else ''} {', '.join(stop.stopped)} will be retried" \
            if stop.stopped else ""
        _fail(f"interrupted: the study is saved in {s['folder']}/ ({s['done']} of {s['requested']} trials done{retry}); "
              f"run the same command to continue it", 130)
        return
    click.echo(json.dumps(result) if as_json else summary_text(result))


@main.command("eval")
@click.argument("file", callback=_no_nul)
@click.option("--weights", callback=_no_nul, help="state_dict (.pt); default runs/<model>/model.pt")
@click.option("--spec", "spec_file", callback=_no_nul, help="with an .onnx FILE: the spec for the data")
@SET_OPTION
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def eval_cmd(file: str, weights: str | None, spec_file: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Test-split metrics of trained weights (a spec or a run folder), or of an ONNX file.

    \b
      netspec eval mnist.net                    # runs/mnist_cnn/model.pt on the test split
      netspec eval runs/mnist_cnn
      netspec eval mnist.onnx --spec mnist.net  # the same metrics through onnxruntime
    """
    from pathlib import Path

    if file.lower().endswith(".onnx"):
        from netspec.deploy.export import evaluate_onnx

        if not spec_file:
            raise click.UsageError("evaluating an .onnx file needs --spec FILE for its data and metrics")
        results = evaluate_onnx(file, _spec_or_run(spec_file), overrides, _tell)
    else:
        from netspec.train.evaluate import evaluate_file

        if os.path.isdir(file) and weights is None:
            weights = str(Path(file) / "model.pt")
        results = evaluate_file(_spec_or_run(file), weights, overrides, _tell)
    if as_json:
        click.echo(json.dumps(results))
    else:
        for k, v in results.items():
            click.echo(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")


@main.command()
@click.argument("source", callback=_no_nul)
@click.option("-o", "--output", callback=_no_nul, help="the .onnx file (default: the export section, else <model>.onnx)")
@click.option("--weights", callback=_no_nul, help="default: runs/<model>/model.pt (a run folder: its model.pt)")
@click.option("--opset", type=click.IntRange(9, 23))
@click.option("--tolerance", type=float, metavar="FLOAT",
              help="max torch vs onnxruntime difference (default 1e-4)")
@click.option("--quantize", type=click.Choice(["int8", "none"]),
              help="int8: also write NAME.int8.onnx, calibrated and checked on the test metric")
@click.option("--calibration", type=click.IntRange(min=1), metavar="N",
              help="training samples that calibrate int8 (default 512)")
@click.option("--max-metric-drop", type=click.FloatRange(min=0), metavar="FLOAT",
              help="refuse the int8 model when its test metric is worse by more (default 0.01)")
@SET_OPTION
@handle_errors
def export(source: str, output: str | None, weights: str | None, opset: int | None, tolerance: float | None,
           quantize: str | None, calibration: int | None, max_metric_drop: float | None,
           overrides: tuple[str, ...]) -> None:
    """Export to ONNX and verify against onnxruntime.

    SOURCE is a spec, a run folder, or just the output file: then the most recently
    finished run under ./runs/ is exported.

    \b
      netspec export model.onnx                      # the latest finished run
      netspec export runs/mnist_cnn -o m.onnx        # a run folder: its spec.net and model.pt
      netspec export mnist.net -o m.onnx             # a spec: runs/<model>/model.pt, or --weights
      netspec export mnist.net --quantize int8       # and mnist.int8.onnx beside mnist.onnx
    """
    import math

    from netspec.deploy.export import export_file, exported_line, valid_tolerance

    _named_output(output, "model.onnx")
    if tolerance is not None and not valid_tolerance(tolerance):  # nan and inf included
        raise click.BadParameter(f"{tolerance} is not a finite number greater than 0, e.g. --tolerance 1e-4",
                                 param_hint="'--tolerance'")
    if max_metric_drop is not None and not math.isfinite(max_metric_drop):
        raise click.BadParameter(f"{max_metric_drop} is not a finite number, e.g. --max-metric-drop 0.01",
                                 param_hint="'--max-metric-drop'")
    report = export_file(source, output, weights, opset, tolerance, overrides, _tell, quantize, calibration,
                         max_metric_drop, exported=lambda r: click.echo(exported_line(r)))
    if "int8" in report:
        from netspec.deploy.quantize import quantized_line

        click.echo(quantized_line(report["int8"]))
    else:
        click.echo(exported_line(report))


@main.command("data")
@click.argument("file", callback=_no_nul)
@click.option("--preview", is_flag=True, help="draw the first training batch as the model sees it (augmented)")
@click.option("-o", "--output", callback=_no_nul, default="preview.png", show_default=True,
              help="the preview's .png file")
@click.option("--count", type=click.IntRange(1, 256), default=32, show_default=True, help="samples in the preview")
@SET_OPTION
@handle_errors
def data_cmd(file: str, preview: bool, output: str, count: int, overrides: tuple[str, ...]) -> None:
    """What the data section produces: splits, shapes, classes, statistics, augmentation.

    \b
      netspec data mnist_folder.net
      netspec data fashion_resnet.net --preview -o grid.png
    """
    from pathlib import Path

    from netspec.tools.inspect_data import describe, inspect
    from netspec.tools.inspect_data import preview as draw_preview

    checked, data = inspect(_spec_or_run(file), overrides, _tell)
    click.echo(describe(checked, data))
    if preview:
        n = draw_preview(checked, data, Path(output), count)
        click.echo(f"wrote {output}: {n} training samples as the model sees them")


@main.command()
@click.argument("model", callback=_no_nul)
@click.argument("inputs", nargs=-1, callback=_no_nul)
@click.option("--text", "texts", multiple=True, metavar="TEXT", help="a text for a model of texts (repeatable)")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def predict(model: str, inputs: tuple[str, ...], texts: tuple[str, ...], top_k: int, batch_size: int,
            as_json: bool) -> None:
    """Run an exported model on images, .npy, .csv or IDX files, or texts (onnxruntime only).

    MODEL is an .onnx file, or a run folder (its exported .onnx; exported first if missing).
    A folder among the INPUTS stands for the images in it and its subfolders. A model of
    texts reads --text strings, .txt files (one text per line) and .csv files (its text columns).

    \b
      netspec predict model.onnx digit.png more/*.png photos/
      netspec predict runs/iris flowers.csv --json
      netspec predict classifier.onnx --text "a small bird of the woodlands" texts.txt
    """
    if not inputs and not texts:
        raise click.UsageError("give the inputs to predict on (files, or --text for a model of texts)")
    from netspec.deploy.predict import format_result, predictions, run_model
    from netspec.deploy.runtime import load_session

    if os.path.isdir(model):
        folder = model
        model = run_model(model) or _export_run(model)
        exported = sorted(p for p in os.listdir(folder) if p.lower().endswith(".onnx"))
        if len(exported) > 1:
            _tell(f"{folder}: using {os.path.basename(model)}, the newest of its exported models "
                  f"({', '.join(exported)}); name a file to pick another")
    session, meta = load_session(model)
    everything = []
    for r in predictions(session, meta, inputs, top_k, batch_size, texts, _tell):
        if as_json:
            everything.append(r)
        else:
            click.echo(format_result(r))
    if as_json:
        click.echo(json.dumps(everything))


def _export_run(run: str) -> str:
    """A run folder with no exported model: export it now (said first), and return the file."""
    from pathlib import Path

    from netspec.deploy.export import export_file, exported_line
    from netspec.deploy.predict import run_model

    folder = Path(run)
    _tell(f"{folder} has no exported model yet; exporting it first")
    report = export_file(str(folder), tell=_tell, exported=lambda r: click.echo(exported_line(r)))
    if "int8" in report:
        from netspec.deploy.quantize import quantized_line

        click.echo(quantized_line(report["int8"]))
    else:
        click.echo(exported_line(report))
    found = run_model(run)
    assert found is not None  # export_file wrote it
    return found


@main.command()
@click.argument("file", callback=_no_nul)
@click.option("-o", "--output", callback=_no_nul, metavar="FILE",
              help="FILE.svg, FILE.png or FILE.dot (Graphviz source); default ./<model>.svg")
@click.option("--depth", type=click.IntRange(min=0), metavar="N",
              help="draw Sequentials nested deeper than N as one box (default: the deepest that keeps "
                   "the picture within 150 boxes)")
@SET_OPTION
@handle_errors
def diagram(file: str, output: str | None, depth: int | None, overrides: tuple[str, ...]) -> None:
    """Draw the architecture: input, layers with shapes and parameters, branches, blocks.

    FILE is a spec, a packaged example's name, or a run folder (its spec.net). An
    existing output file is replaced only if it is of the same kind (SVG, PNG, digraph).

    \b
      netspec diagram mnist.net -o mnist.svg
      netspec diagram resnet50 -o resnet50.png --depth 1   # stages as boxes
      netspec diagram runs/mnist_cnn -o model.dot          # then: dot -Tpdf model.dot -o model.pdf
    """
    from netspec.tools.diagram import write_diagram

    _named_output(output, "model.svg")
    spec = _spec_or_run(file)
    checked = _load_with_weights(spec, overrides)
    written = write_diagram(checked, output or f"{checked.model.name}.svg", depth, (file, spec))
    from netspec.util import count

    click.echo(f"wrote {written.path} ({count(written.boxes, 'box', 'boxes')}, depth {written.depth} of "
               f"{written.max_depth})")


@main.command()
@click.argument("file", callback=_no_nul)
@click.option("-o", "--output", callback=_no_nul, metavar="FILE.py",
              help="the program to write (default ./train_<model>.py); only an unedited earlier output of "
                   "netspec eject is replaced")
@SET_OPTION
@handle_errors
def eject(file: str, output: str | None, overrides: tuple[str, ...]) -> None:
    """Write the spec out as a standalone PyTorch program (no netspec import).

    The program builds the same nn.Sequential under the same seed, reads, splits and
    preprocesses the same data, and trains with the same loop: with the same seed it ends
    with the same weights as `netspec train`. The data are read once to bake in the
    training split's statistics and vocabularies.

    \b
      netspec eject mnist.net -o train_mnist.py
      python train_mnist.py --epochs 1
      netspec eject runs/mnist_cnn -o train.py     # the spec a run was trained with
    """
    from netspec import load
    from netspec.tools.eject import write_program

    _named_output(output, "train.py")
    spec = _spec_or_run(file)
    checked = load(spec, overrides, read_data=True)
    target = output or f"train_{checked.model.name}.py"
    text = write_program(checked, target, [file, spec], file, overrides, _tell)
    click.echo(f"wrote {target} ({len(text.splitlines()):,} lines); run it with: {shell_command('python', target)}")


@main.command()
@click.argument("a", callback=_no_nul)
@click.argument("b", callback=_no_nul)
@click.option("--json", "as_json", is_flag=True, help="one JSON object (keys in docs/commands.md)")
@click.option("--exit-code", is_flag=True, help="exit 1 when the specs differ (like git diff --exit-code)")
@handle_errors
def diff(a: str, b: str, as_json: bool, exit_code: bool) -> None:
    """What changed between two specs or run folders: layers, shapes, parameters, settings.

    Layers are matched by their path of names; an inserted layer is one insertion. Run
    folders also compare their spec hashes and final metrics. Exits 0 whether or not
    they differ, unless --exit-code.

    \b
      netspec diff mnist.net mnist_wide.net
      netspec diff runs/mnist_cnn runs/mnist_cnn.1     # two trainings, metrics side by side
      netspec diff a.net b.net --json
    """
    from netspec.tools.diff import diff_paths, render_text, to_json

    result = diff_paths(a, b, _tell)
    click.echo(json.dumps(to_json(result), indent=2) if as_json else render_text(result))
    if exit_code and result.differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
