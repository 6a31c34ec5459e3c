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
import sys
from collections.abc import Callable
from typing import Any

import click

from .errors import NetspecError


def _fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NetspecError as e:
            _fail(e.render(), 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - last line of defence: no tracebacks for users
            if os.environ.get("NETSPEC_DEBUG"):
                raise
            _fail(f"netspec: internal error: {type(e).__name__}: {e}\n"
                  "this is a bug in netspec; rerun with NETSPEC_DEBUG=1 for details", 3)

    return wrapper


SET_OPTION = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="override a setting, e.g. --set train.epochs=1 or --set hidden=256")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netspec")
def main() -> None:
    """netspec: declarative model specs for PyTorch."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="diagnostics as JSON lines (for editors)")
@click.option("--target", type=click.Choice(["onnx"]), help="also check that every layer can be exported")
@SET_OPTION
@handle_errors
def check(files: tuple[str, ...], as_json: bool, target: str | None, overrides: tuple[str, ...]) -> None:
    """Check specs: syntax, names, arguments, shapes, lints."""
    from . import load
    from .check import parameter_count

    failed = False
    for f in files:
        try:
            checked = load(f, overrides, target)
        except NetspecError as e:
            failed = True
            if as_json:
                for d in e.diagnostics:
                    click.echo(json.dumps(d.to_json()))
            else:
                click.echo(e.render(), err=True)
            continue
        for w in checked.warnings:
            click.echo(json.dumps(w.to_json()) if as_json else w.render(), err=not as_json)
        if not as_json:
            from .catalogue import fmt_shape

            m = checked.model
            click.echo(f"{f}: ok: model `{m.name}` {fmt_shape(m.input_shape)} -> {fmt_shape(m.output_shape)}, "
                       f"{parameter_count(m.root):,} parameters")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@SET_OPTION
@handle_errors
def summary(file: str, overrides: tuple[str, ...]) -> None:
    """Layer table: name, type, output shape, parameters (no torch needed)."""
    from . import load
    from .summary import summary_text

    click.echo(summary_text(load(file, overrides)))


@main.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--check", "check_only", is_flag=True, help="exit 1 if a file is not formatted; change nothing")
@handle_errors
def fmt(files: tuple[str, ...], check_only: bool) -> None:
    """Rewrite specs in canonical layout (comments kept)."""
    from .errors import error
    from .format import format_text
    from .util import atomic_write_text

    unformatted = []
    for f in files:
        try:
            text = open(f, encoding="utf-8").read()
        except OSError as e:
            raise error(f"{f}: cannot read ({e.strerror})") from None
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


@main.command("ir")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--checked", is_flag=True, help="dump the checked IR (resolved layers and shapes)")
@handle_errors
def ir_cmd(file: str, checked: bool) -> None:
    """Print the stable IR dump (used by golden tests)."""
    from . import ir, load, parse_file

    if checked:
        c = load(file)
        click.echo(ir.dump(c.model))
    else:
        click.echo(ir.dump(parse_file(file)))


@main.command()
@click.argument("name", required=False)
@click.option("--category", help="only layers of this category")
@handle_errors
def layers(name: str | None, category: str | None) -> None:
    """List the catalogue's layers, or show one layer's arguments."""
    from . import catalogue as cat
    from .errors import did_you_mean, error

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
                    click.echo(f"  {p.name}: {cat.describe_type(p.type)}{default}{tag}")
                if kind == "layer":
                    click.echo(f"  input: {row.expects}; ONNX: {'yes' if row.onnx else 'no'}"
                               + (f" ({row.onnx_note})" if row.onnx_note else ""))
                return
        names = [n for t in cat.ALL_KINDS.values() for n in t]
        raise error(f"unknown name `{name}`", did_you_mean(name, names))
    width = max(len(n) for n in cat.LAYERS)
    for row in cat.LAYERS_LIST:
        if category and row.category != category:
            continue
        args = ", ".join(p.name + ("*" if p.inferred else "") for p in row.params)
        click.echo(f"{row.name:<{width}}  {row.category:<13} ({args})")
    if not category:
        click.echo("\n* inferred from the incoming shape; `netspec layers NAME` for details", err=True)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@SET_OPTION
@click.option("--epochs", type=click.IntRange(min=1), help="shorthand for --set train.epochs=N")
@click.option("--device", help="auto | cpu | cuda | cuda:N | mps")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="run directory (default runs/<model>)")
@click.option("--resume", is_flag=True, help="continue from the run directory's checkpoint.pt")
@click.option("--quiet", is_flag=True, help="no progress bar, one line per epoch")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per epoch on stdout")
@handle_errors
def train(file: str, overrides: tuple[str, ...], epochs: int | None, device: str | None, out_dir: str | None,
          resume: bool, quiet: bool, as_json: bool) -> None:
    """Train the model; writes runs/<model>/ (weights, checkpoint, metrics, curves)."""
    from .train import train_file

    extra = list(overrides)
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if device is not None:
        extra.append(f'train.device="{device}"')
    train_file(file, tuple(extra), out_dir=out_dir, resume=resume, quiet=quiet, as_json=as_json)


@main.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--weights", type=click.Path(dir_okay=False), help="state_dict (.pt); default runs/<model>/model.pt")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False), help="with an .onnx FILE: the spec for the data")
@SET_OPTION
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def eval_cmd(file: str, weights: str | None, spec_file: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Test-split metrics of trained weights (a spec), or of an ONNX file with --spec."""
    if file.endswith(".onnx"):
        from .export import evaluate_onnx

        if not spec_file:
            raise click.UsageError("evaluating an .onnx file needs --spec FILE for its data and metrics")
        results = evaluate_onnx(file, spec_file, overrides)
    else:
        from .train import evaluate_file

        results = evaluate_file(file, weights, overrides)
    if as_json:
        click.echo(json.dumps(results))
    else:
        for k, v in results.items():
            click.echo(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="default: the export section, then <model>.onnx")
@click.option("--weights", type=click.Path(dir_okay=False), help="default: runs/<model>/model.pt")
@click.option("--opset", type=click.IntRange(9, 23))
@click.option("--tolerance", type=float, help="max abs difference torch vs onnxruntime (default 1e-4)")
@SET_OPTION
@handle_errors
def export(file: str, output: str | None, weights: str | None, opset: int | None, tolerance: float | None,
           overrides: tuple[str, ...]) -> None:
    """Export to ONNX and verify against onnxruntime."""
    from .export import export_file

    export_file(file, output, weights, opset, tolerance, overrides)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def predict(model: str, inputs: tuple[str, ...], top_k: int, batch_size: int, as_json: bool) -> None:
    """Run an exported .onnx model on images, .npy, .csv or IDX files (onnxruntime only)."""
    from .predict import predict_files

    predict_files(model, inputs, top_k=top_k, batch_size=batch_size, as_json=as_json)


if __name__ == "__main__":
    main()
