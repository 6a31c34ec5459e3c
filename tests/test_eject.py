"""`netspec eject`: the ejected program is the hand-written program.

For every example with data (a few epochs on a subset) and for specs that reach the other
code paths (CSV with categories and string labels, binary and multi-output targets, stratified
splits, early stopping, initialisers, branches, LBFGS, L1 and clipping, NumPy sources), the
ejected file is ruff-clean, runs with netspec made unimportable, and ends with weights
`torch.equal` to `netspec train` with the same seed and settings.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXAMPLES, FIXTURES, have_dataset, netspec_cmd

DATA = FIXTURES / "data"
NO_NETSPEC = ("import runpy, sys; sys.modules['netspec'] = None; sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")

# (example, overrides, data set it needs)
EXAMPLE_CASES = [
    ("mnist.net", ("data.subset=600", "train.epochs=2"), "mnist"),
    ("mnist_mlp.net", ("data.subset=600", "train.epochs=2"), "mnist"),
    ("fashion_mnist.net", ("data.subset=600", "train.epochs=2"), "fashion_mnist"),
    ("fashion_resnet.net", ("data.subset=300", "train.epochs=2"), "fashion_mnist"),
    ("mnist_folder.net", ("data.subset=300", "train.epochs=2"), "mnist_png"),
    ("linear_regression.net", ("train.epochs=40", "train.checkpoint_every=10"), None),
    ("sine_poly.net", ("train.epochs=3",), None),
    ("sequence_sum.net", ("train.epochs=2", "samples=400"), None),
    ("zoo/lenet5.net", ("data.subset=600", "train.epochs=2"), "mnist"),
    ("zoo/se_cnn.net", ("train.epochs=2", "samples=128"), None),
    ("zoo/transformer_text.net", ("train.epochs=2", "samples=256"), None),
    ("text_classifier.net", ("data.subset=400", "train.epochs=1"), "wordnet"),
    ("text_bag.net", ("data.subset=800", "train.epochs=2"), "wordnet"),
]


def _available(name: str | None) -> bool:
    if name is None:
        return True
    if name == "wordnet":
        from conftest import have_wordnet

        return have_wordnet()
    if name == "mnist_png":
        from netspec.data.datasets import cache_dir

        return (cache_dir() / "mnist_png" / ".complete").is_file()
    return have_dataset(name)


def _ruff(path: Path) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    return subprocess.run([ruff, "check", "--isolated", "--select", "E,F,W,I,B,UP", "--line-length", "120",
                           str(path)], capture_output=True, text=True)


def eject_and_compare(spec: Path, overrides: tuple[str, ...], tmp_path: Path) -> Path:
    """Train with netspec, eject, run the program without netspec; the weights must be equal."""
    from netspec import load
    from netspec.tools.eject import write_program
    from netspec.train.trainer import train_file

    run = tmp_path / "run"
    train_file(str(spec), overrides, out_dir=str(run), quiet=True)
    program = tmp_path / "train_it.py"
    text = write_program(load(str(spec), overrides), str(program), [str(spec)])
    tree = ast.parse(text)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
        {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "netspec" not in imported
    lint = _ruff(program)
    assert lint.returncode == 0, lint.stdout
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", NO_NETSPEC, str(program), "--out", str(out)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "weights saved in" in r.stdout
    # the test line says which weights it tested, as netspec's does
    assert not re.search(r"^test: ", r.stdout, re.M), r.stdout
    assert all(re.match(r"test \((best epoch \d+ of \d+ by \w+|last epoch \d+ of \d+)\): test_", line)
               for line in r.stdout.splitlines() if line.startswith("test"))
    ours = torch.load(run / "model.pt", weights_only=True)
    theirs = torch.load(out / "model.pt", weights_only=True)
    assert list(ours) == list(theirs)
    unequal = [k for k in ours if not torch.equal(ours[k], theirs[k])]
    assert not unequal, unequal
    return program


@pytest.mark.parametrize("example,overrides,needs", EXAMPLE_CASES, ids=[c[0] for c in EXAMPLE_CASES])
def test_every_example_ejects_to_the_same_weights(example, overrides, needs, tmp_path):
    if not _available(needs):
        pytest.skip(f"{needs} not installed (make data)")
    eject_and_compare(EXAMPLES / example, overrides, tmp_path)


def _spec(tmp_path: Path, text: str, name: str = "spec.net") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_with_categories_string_labels_stratify_and_early_stopping(tmp_path):
    rows = (DATA / "iris.csv").read_text().splitlines()
    sizes = ["small", "large"]
    lines = [rows[0] + ",size"] + [f"{r},{sizes[i % 2]}" for i, r in enumerate(rows[1:])]
    (tmp_path / "iris_sized.csv").write_text("\n".join(lines) + "\n")
    spec = _spec(tmp_path, '''
model iris {
    input: [6]
    fc1: Linear(16) with weight=xavier_uniform, bias=zeros
    act: Tanh
    drop: Dropout(0.1)
    out: Linear(3)
}
data {
    train: csv("iris_sized.csv", target="species", categorical=["size"])
    split: [0.6, 0.2, 0.2]
    stratify: true
    normalize: standard
    batch_size: 16
}
train {
    loss: CrossEntropyLoss(weight=[1.0, 2.0, 1.0])
    optimizer: SGD(lr=0.05, momentum=0.9)
    scheduler: ReduceLROnPlateau(patience=1)
    epochs: 12
    metrics: [accuracy, f1, top_k(2)]
    early_stopping: EarlyStopping(monitor="val_accuracy", patience=3)
    l1: 1e-4
    clip_grad_norm: 1.0
    seed: 3
}
''')
    eject_and_compare(spec, (), tmp_path)


def test_binary_targets_with_bce_and_model_wide_init(tmp_path):
    shutil.copy(DATA / "breast_cancer.csv", tmp_path)
    header = (DATA / "breast_cancer.csv").read_text().splitlines()[0].split(",")
    spec = _spec(tmp_path, f'''
model cancer {{
    input: [{len(header) - 1}]
    init: kaiming_normal(nonlinearity="relu")
    Linear(8); ReLU
    Linear(1)
}}
data {{
    train: csv("breast_cancer.csv", target="{header[-1]}")
    validation: 0.2
    normalize: minmax
    batch_size: 32
}}
train {{
    loss: BCEWithLogitsLoss
    optimizer: AdamW(lr=1e-2)
    epochs: 3
    metrics: [accuracy, auc]
    save: last
}}
''')
    eject_and_compare(spec, (), tmp_path)


def test_multi_output_regression_and_branches(tmp_path):
    shutil.copy(DATA / "diabetes.csv", tmp_path)
    spec = _spec(tmp_path, '''
model two_targets {
    input: [9]
    trunk: { Linear(16); ReLU }
    mix: concat { wide: Linear(8); deep: { Linear(8); Tanh; Linear(8) } }
    res: residual { Linear(16); ReLU(inplace=true) }
    head: Linear(2)
}
data {
    train: csv("diabetes.csv", target=["bp", "progression"], features=["age", "sex", "bmi", "s1", "s2", "s3", "s4", "s5", "s6"])
    validation: 0.25
    normalize: standard
    normalize_target: standard
    batch_size: 64
    shuffle: false
}
train {
    loss: SmoothL1Loss
    optimizer: Adam(lr=3e-3)
    scheduler: CosineAnnealingLR(T_max=3)
    epochs: 3
    metrics: [mae, rmse, r2]
}
''')
    eject_and_compare(spec, (), tmp_path)


def test_npz_source_one_hot_targets_and_mse(tmp_path):
    g = np.random.default_rng(0)
    np.savez(tmp_path / "blobs.npz", images=g.integers(0, 256, (120, 8, 8), dtype=np.uint8),
             labels=g.integers(0, 4, 120))
    spec = _spec(tmp_path, '''
model blobs {
    input: [1, 8, 8]
    Conv2d(4, 3, padding=1); BatchNorm2d; ReLU
    Flatten
    Linear(4)
    Softmax(dim=1)
}
data {
    train: npz("blobs.npz", x="images", y="labels")
    one_hot: true
    validation: 0.25
    batch_size: 30
}
train {
    loss: MSELoss
    optimizer: RMSprop(lr=1e-3)
    epochs: 2
    metrics: [accuracy]
}
export {
    quantize: int8  # an export setting: the program trains exactly the same
    calibration: 64
}
''')
    eject_and_compare(spec, (), tmp_path)


def test_float_npy_images_with_augmentation(tmp_path):
    """Float [1, 12, 12] samples from .npy, cropped and flipped (issue 19: augment was refused)."""
    g = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", g.uniform(0, 1, (80, 1, 12, 12)).astype(np.float32))
    np.save(tmp_path / "y.npy", g.integers(0, 3, 80))
    spec = _spec(tmp_path, '''
model floats {
    input: [1, 12, 12]
    Conv2d(4, 3, padding=1); ReLU
    Flatten
    Linear(3)
}
data {
    train: npy(x="x.npy", y="y.npy")
    split: [0.6, 0.2, 0.2]
    batch_size: 16
    augment: [RandomCrop(12, padding=2), RandomHorizontalFlip()]
}
train {
    loss: CrossEntropyLoss
    epochs: 2
    metrics: [accuracy]
}
''')
    eject_and_compare(spec, (), tmp_path)


def test_cli_eject_writes_and_never_overwrites_what_it_did_not_write(tmp_path):
    env = {**os.environ, "NETSPEC_OFFLINE": "1"}
    spec = EXAMPLES / "linear_regression.net"

    def cli(*args):
        return subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True, cwd=tmp_path, env=env)

    r = cli("eject", str(spec), "-o", "train_lr.py")
    assert r.returncode == 0, r.stderr
    assert "wrote train_lr.py" in r.stdout
    assert (tmp_path / "train_lr.py").read_text().startswith('"""train_lr.py: the linear_regression model')
    r = cli("eject", str(spec), "-o", "train_lr.py")  # its own file: replaced
    assert r.returncode == 0, r.stderr
    mine = tmp_path / "mine.py"
    mine.write_text("print('my own work')\n")
    r = cli("eject", str(spec), "-o", "mine.py")
    assert r.returncode == 1 and "is not an unedited program of netspec eject" in r.stderr
    assert mine.read_text() == "print('my own work')\n"
    quoting = tmp_path / "notes.py"  # quoting eject's words does not make a file eject's
    quoting.write_text('"""Written by `netspec eject x.net` ..."""\n')
    assert cli("eject", str(spec), "-o", "notes.py").returncode == 1
    assert quoting.read_text() == '"""Written by `netspec eject x.net` ..."""\n'
    edited = tmp_path / "train_lr.py"  # the way out: a user edits the program; re-ejecting keeps the edits
    edited.write_text(edited.read_text().replace("SEED = 0", "SEED = 1"))
    r = cli("eject", str(spec), "-o", "train_lr.py")
    assert r.returncode == 1 and "it was edited" in r.stderr
    assert "SEED = 1" in edited.read_text()
    (tmp_path / "empty.py").write_text("")
    assert cli("eject", str(spec), "-o", "empty.py").returncode == 0
    copy = tmp_path / "lr.py.net"
    shutil.copy(spec, copy)
    for bad, message in ((str(copy), "is a file NAME.py"), (".", "is a file NAME.py"), ("sub", "is a file NAME.py"),
                         (".py", "is a file NAME.py")):
        r = cli("eject", str(spec), "-o", bad)
        assert r.returncode == 1 and message in r.stderr, (bad, r.stderr)
    (tmp_path / "afile").write_text("x")
    r = cli("eject", str(spec), "-o", "afile/t.py")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    r = cli("eject", "nope.net")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = cli("eject", "--help")
    assert r.returncode == 0 and "netspec eject mnist.net -o train_mnist.py" in r.stdout
    from click.testing import CliRunner

    from netspec.cli import main

    assert CliRunner().invoke(main, ["eject", str(spec), "-o", "a\0b.py"]).exit_code == 2
    assert cli("eject", str(spec), "-o", "").returncode == 2


def test_eject_needs_data(tmp_path):
    spec = _spec(tmp_path, "model m { input: [4]\n Linear(2) }\n")
    r = subprocess.run([*netspec_cmd(), "eject", str(spec), "-o", str(tmp_path / "t.py")], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "eject needs a data section" in r.stderr
    assert not (tmp_path / "t.py").exists()


# ---------------------------------------------------------------- the hostile pass: each was a wrong program once

TABLE = '''model m {{
    input: [{inp}]
    {layers}
}}
data {{
    train: table(x={x}, y={y})
    {data}
}}
train {{
    loss: {loss}
    optimizer: SGD(lr=0.05)
    epochs: 3
    {train}
}}
'''
HOSTILE_TABLES = {
    # a negative constant pasted into `a ** 2` must stay one operand
    "negative_let_power": ("let a = -2\n", dict(inp="1", layers="Linear(1)", x="linspace(0, 1, 50)", y="x + a ** 2",
                                             data="batch_size: full", loss="MSELoss", train="")),
    # netspec's powers are float64 (2 ** 53 + 1 is not exact)
    "float_power": ("", dict(inp="1", layers="Linear(1)", x="linspace(0, 1, 20)", y="2 ** 53 + 1 - 2 ** 53 + x",
                             data="batch_size: full", loss="MSELoss", train="")),
    # `let x` inside the x column; the y column sees the x column
    "let_named_x": ("let x = 3\n", dict(inp="1", layers="Linear(1)", x="linspace(0, x, 12)", y="x * 2",
                                       data="batch_size: 4", loss="MSELoss", train="")),
    # Softmax means dim=-1 (torch's bare Softmax() picks an implicit dim)
    "softmax_default_dim": ("", dict(inp="3, 4", layers="Linear(4); Softmax; Flatten; Linear(1)",
                                     x="normal(0, 1, [64, 3, 4])", y="sum(sum(x, 2), 1)", data="batch_size: 16",
                                     loss="MSELoss", train="")),
    # metric keys as netspec reports them (top_2), monitored
    "monitor_top_k": ("", dict(inp="4", layers="Linear(3)", x="normal(0, 1, [90, 4])", y="randint(0, 3, 90)",
                               data="validation: 0.3\n    batch_size: 16", loss="CrossEntropyLoss",
                               train='metrics: [top_k(1), top_k(2)]\n    '
                                     'early_stopping: EarlyStopping(monitor="val_top_2", patience=1)')),
    # value metrics beside class metrics on one-hot targets
    "one_hot_mse_monitor": ("", dict(inp="4", layers="Linear(3)", x="normal(0, 1, [90, 4])", y="randint(0, 3, 90)",
                                     data="validation: 0.3\n    one_hot: true\n    batch_size: 16", loss="MSELoss",
                                     train='metrics: [accuracy, mse]\n    '
                                           'early_stopping: EarlyStopping(monitor="val_mse", patience=1)')),
}


@pytest.mark.parametrize("name", list(HOSTILE_TABLES))
def test_hostile_tables_and_metrics(name, tmp_path):
    lets, parts = HOSTILE_TABLES[name]
    eject_and_compare(_spec(tmp_path, lets + TABLE.format(**parts)), (), tmp_path)


CSV_CASES = {
    # the loss decides how outputs become classes (SoftMarginLoss/BCEWithLogits: logits; one-hot: multi-label)
    "multilabel_soft_margin": ('breast_cancer.csv", target="diagnosis"', "30", "Linear(8); Tanh; Linear(1)",
                               "MultiLabelSoftMarginLoss", ""),
    "bce_one_hot": ('iris.csv", target="species"', "4", "Linear(3)", "BCEWithLogitsLoss", "one_hot: true"),
    "bce_auc": ('breast_cancer.csv", target="diagnosis"', "30", "Linear(8); Tanh; Linear(1); Sigmoid", "BCELoss", ""),
}


@pytest.mark.parametrize("name", list(CSV_CASES))
def test_hostile_losses_and_monitored_class_metrics(name, tmp_path):
    source, inp, layers, loss, extra = CSV_CASES[name]
    monitor = "val_auc" if name == "bce_auc" else "val_accuracy"
    metrics = "[accuracy, auc]" if name == "bce_auc" else "[accuracy]"
    spec = _spec(tmp_path, f'''model m {{
    input: [{inp}]
    {layers}
}}
data {{
    train: csv("{DATA}/{source})
    validation: 0.3
    {extra}
    normalize: standard
    batch_size: 16
}}
train {{
    loss: {loss}
    optimizer: SGD(lr=0.2)
    epochs: 5
    metrics: {metrics}
    early_stopping: EarlyStopping(monitor="{monitor}", patience=2)
    seed: 2
}}
''')
    eject_and_compare(spec, (), tmp_path)


def _image_folder(root: Path) -> None:
    """16-bit grayscale PNGs, a linked subfolder inside the root, and one corrupt file."""
    from PIL import Image

    g = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(g.integers(0, 65535, (8, 8)).astype(np.uint16)).save(root / c / f"{i}.png")
    (root / "cat" / "extra").mkdir()
    for i in range(4):
        Image.fromarray(g.integers(0, 256, (10, 10), dtype=np.uint8)).save(root / "cat" / "extra" / f"e{i}.png")
    os.symlink(root / "cat" / "extra", root / "dog" / "linked")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def test_hostile_image_folder_wide_pngs_links_and_skip_bad(tmp_path):
    _image_folder(tmp_path / "imgs")
    spec = _spec(tmp_path, f'''model m {{
    input: [1, 8, 8]
    Flatten
    Linear(2)
}}
data {{
    train: image_folder("{tmp_path / 'imgs'}")
    validation: 0.25
    augment: [ColorJitter(brightness=0.3, contrast=0.3), RandomResizedCrop(8, scale=(0.5, 1.0))]
    normalize: standard
    batch_size: 8
    skip_bad: true
}}
train {{
    loss: CrossEntropyLoss
    optimizer: SGD(lr=0.1)
    epochs: 2
    metrics: [accuracy]
}}
''')
    eject_and_compare(spec, (), tmp_path)


@pytest.mark.parametrize("problem,data,train_extra", [
    ("no validation data", "batch_size: 8", "early_stopping: EarlyStopping(patience=1)"),
    ("does not report", "validation: 0.2\n    batch_size: 8", 'early_stopping: EarlyStopping(monitor="val_f1")'),
])
def test_eject_refuses_what_train_refuses(problem, data, train_extra, tmp_path):
    spec = _spec(tmp_path, TABLE.format(inp="2", layers="Linear(2)", x="normal(0, 1, [40, 2])", y="randint(0, 2, 40)",
                                        data=data, loss="CrossEntropyLoss",
                                        train="metrics: [accuracy]\n    " + train_extra))
    for args in (["eject", str(spec), "-o", str(tmp_path / "t.py")], ["train", str(spec), "--out", str(tmp_path / "r")]):
        r = subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True)
        assert r.returncode == 1 and problem in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert "epoch 1" not in r.stdout  # refused before training
    assert not (tmp_path / "t.py").exists()


@pytest.mark.slow
def test_text_columns_eject_to_the_same_weights(tmp_path):
    """Texts: the program learns the same tokenizer from the training split (two text columns
    joined by [SEP]), pads each batch to its longest text, buckets by length, and masks padding
    in attention, the bidirectional GRU and the pooling exactly as netspec does."""
    import csv

    rng = np.random.default_rng(0)
    words = {"cat": "fur paw tail purr", "car": "wheel engine road fuel", "tea": "cup leaf hot drink"}
    with open(tmp_path / "texts.csv", "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["title", "body", "label"])
        for i in range(90):
            label = sorted(words)[i % 3]
            pool = (words[label] + " the a of and").split()
            body = " ".join(rng.choice(pool, int(rng.integers(0, 12))))
            out.writerow([label.upper() if i % 4 else "", body, label])
    spec = _spec(tmp_path, '''
model texts {
    input: [_]
    embed: Embedding(vocab_size, 8)
    att: residual { MultiheadAttention(2) }
    rnn: GRU(6, bidirectional=true)
    both: concat(dim=1) { Mean(1); Max(1); Last }
    head: Linear(num_classes)
}
data {
    train: csv("texts.csv", target="label", text=["title", "body"])
    tokenizer: words(min_freq=2)
    validation: 0.2
    stratify: true
    bucket: true
    batch_size: 8
}
train {
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-2)
    epochs: 2
    metrics: [accuracy]
}
''')
    program = eject_and_compare(spec, (), tmp_path)
    text = program.read_text()
    assert "MaskedSequential(" in text and "masked=[" in text and "from tokenizers import" in text
