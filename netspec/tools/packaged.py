"""The examples shipped inside the package, usable by name from any folder.

In: a spec path as typed (`mnist.net`, `mnist`, `zoo/resnet18.net`). Out: the path to use:
the file itself when it exists (a file in the current folder always wins), else the
packaged example of that name (with a note for the caller to show, saying so). `netspec new` copies an
example (or a template) into the current folder, never overwriting a file.

The wheel carries `examples/` as `netspec/examples/`; a source checkout reads the
top-level `examples/` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from netspec.errors import Tell, error, printable, shell_command

TEMPLATE = """\
# {name}: a minimal spec to start from. `netspec check {file}` after every edit.
model {name} {{
    input: [4]              # the shape of one sample (the batch axis is implicit)
    fc1: Linear(16)         # in_features is inferred from the shape flowing in
    relu1: ReLU
    output: Linear(3)
}}

data {{
    train: csv("data.csv", target="label")   # a CSV with a header row
    validation: 0.2
    normalize: standard
    batch_size: 32
}}

train {{
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-3)
    epochs: 20
    metrics: [accuracy]
}}
"""


def examples_dir() -> Path | None:
    here = Path(__file__).resolve().parent.parent  # the netspec package
    for candidate in (here / "examples", here.parent / "examples"):
        if candidate.is_dir():
            return candidate
    return None


def packaged_examples() -> dict[str, Path]:
    """name (file stem; zoo models by stem too) -> path."""
    root = examples_dir()
    if root is None:
        return {}
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*.net")):
        found.setdefault(p.stem, p)
    return found


def describe(path: Path) -> str:
    """The first comment line of an example: what it is."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("# ").strip()
            if line.strip():
                break
    except OSError:
        pass
    return ""


def resolve_spec(path: str, tell: Tell | None = None) -> str:
    """`path` itself when it exists; else the packaged example it names, said to `tell`. Only
    a bare name (`mnist`, `mnist.net`: any example of that name) or a path inside the examples
    tree (`examples/zoo/resnet18.net`, `zoo/resnet18.net`: that very file) falls back; any
    other path that does not exist is reported as given (`examples/../../x/mnist.net` is not
    the packaged mnist.net)."""
    if os.path.exists(path) or "\0" in path:
        return path
    example = _packaged(path)
    if example is None:
        return path
    if tell is not None:
        tell(f"using the packaged example {example}; `{shell_command('netspec', 'new', example.stem)}` copies it here")
    return str(example)


def _packaged(path: str) -> Path | None:
    name = path if path.endswith(".net") else f"{path}.net"
    if os.sep not in path.rstrip(os.sep) and (not os.altsep or os.altsep not in path):
        return packaged_examples().get(name[:-4])
    root = examples_dir()
    if root is None or ".." in Path(name).parts or Path(name).is_absolute():
        return None  # `examples/x/../mnist.net` names a folder x that is not there, not the packaged file
    parts = Path(os.path.normpath(name)).parts
    if parts[0] == "examples":
        parts = parts[1:]
    elif parts[0] != "zoo":
        return None
    candidate = root.joinpath(*parts)
    return candidate if parts and candidate.is_file() else None


def new_spec(name: str, output: str | None) -> Path:
    """Copy example `name` (or a template for a new model called `name`) to `output`
    (default ./NAME.net); an existing file is never overwritten."""
    stem = name[:-4] if name.endswith(".net") else name
    example = packaged_examples().get(stem)
    target = Path(output or f"{stem}.net")
    if example is not None:
        text = example.read_text(encoding="utf-8")
    else:
        if not stem.isidentifier():
            raise error(f"`{name}` is neither a packaged example nor a valid model name",
                        "`netspec examples` lists the examples; a new model's name is letters, digits and _")
        # the name quoted, and on one line: a newline in it would write spec text into the file
        text = TEMPLATE.format(name=stem, file=printable(shell_command(target.name), newlines=False))
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise error(f"{target} already exists; netspec new never overwrites a file",
                    f"pick another name with -o, e.g. -o {stem}_2.net") from None
    except OSError as e:
        raise error(f"{target}: cannot create ({e.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return target
