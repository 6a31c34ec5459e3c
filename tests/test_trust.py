"""Trust, round three (issue 19, first half): `check` saying ok means training computes
something meaningful; what torch accepts is not refused. Each test failed before its fix.

Real data: scikit-learn's tables written as CSV fixtures (tests/fixtures/data/)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import netspec
from netspec.errors import NetspecError
from tests.conftest import FIXTURES, netspec_cmd

DATA = FIXTURES / "data"
IRIS = 'train: csv("iris.csv", target="species")'
DIABETES = 'train: csv("diabetes.csv", target="progression")'


def write(tmp_path, model: str, data: str, train: str, name: str = "s.net") -> str:
    for f in DATA.glob("*.csv"):
        if not (tmp_path / f.name).exists():
            shutil.copy(f, tmp_path / f.name)
    p = tmp_path / name
    p.write_text(f"model m {{\n    {model}\n}}\ndata {{\n    {data}\n}}\ntrain {{\n    {train}\n}}\n")
    return str(p)


def load(tmp_path, model: str, data: str, train: str, read_data: bool = True):
    return netspec.load(write(tmp_path, model, data, train), read_data=read_data)


def error_of(tmp_path, model: str, data: str, train: str, read_data: bool = True):
    with pytest.raises(NetspecError) as e:
        load(tmp_path, model, data, train, read_data)
    return e.value.diagnostics[0]


def line_of(tmp_path, text: str, name: str = "s.net") -> int:
    return next(i for i, line in enumerate((tmp_path / name).read_text().splitlines(), 1) if text in line)


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


# ---------------------------------------------------------------- metrics that mean something


def test_accuracy_on_a_continuous_target_is_an_error_at_the_metric(tmp_path):
    """diabetes + MSELoss + accuracy reported `accuracy 1` (or 0.08) every epoch."""
    d = error_of(tmp_path, "input: [10]\n    Linear(1)", DIABETES, "loss: MSELoss\n    metrics: [mae, accuracy]")
    assert "`accuracy` counts correct classes, but the targets are continuous" in d.message
    assert "from 25 to 346" in d.message
    assert (d.span.line, d.span.column) == (line_of(tmp_path, "metrics"), 20)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "precision", "recall", "auc"])
def test_class_metrics_on_zero_one_targets_with_mse_are_fine(tmp_path, metric):
    c = load(tmp_path, "input: [30]\n    Linear(1)", 'train: csv("bc01.csv", target="y")',
             f"loss: MSELoss\n    metrics: [{metric}]", read_data=False)
    rows = (DATA / "breast_cancer.csv").read_text().splitlines()
    (tmp_path / "bc01.csv").write_text("\n".join([rows[0].rsplit(",", 1)[0] + ",y"] + [
        r.rsplit(",", 1)[0] + ("," + ("1" if r.endswith("malignant") else "0")) for r in rows[1:]]) + "\n")
    netspec.load(c.spec.file, read_data=True)  # no error


@pytest.mark.parametrize("model, data, train, message, metric", [
    ("input: [4]\n    Linear(1)", 'train: csv("bc.csv", target="y")', "loss: BCEWithLogitsLoss\n    metrics: [top_k(2)]",
     "top_k ranks class scores, but BCEWithLogitsLoss", "top_k(2)"),
    ("input: [4]\n    Linear(3)", IRIS, "loss: CrossEntropyLoss\n    metrics: [top_k(3)]",
     "top_k(3) of 3 classes is always 1", "top_k(3)"),
    ("input: [4]\n    Linear(3)", IRIS, "loss: CrossEntropyLoss\n    metrics: [accuracy, auc]",
     "`auc` measures how well one score separates two classes, but the model outputs [3] classes", "auc"),
    ("input: [4]\n    Linear(1)", 'train: csv("bc.csv", target="y")', "loss: BCEWithLogitsLoss\n    metrics: [mae]",
     "`mae` compares the outputs with the targets, but BCEWithLogitsLoss's outputs are logits", "mae"),
    ("input: [4]\n    Linear(3)\n    LogSoftmax(1)", IRIS + "\n    one_hot: true",
     "loss: KLDivLoss\n    metrics: [accuracy, rmse]", "KLDivLoss's outputs are log-probabilities", "rmse"),
    ("input: [4]\n    Linear(3)", IRIS + "\n    one_hot: true", "loss: CrossEntropyLoss\n    metrics: [r2]",
     "`r2` compares values, but CrossEntropyLoss trains on class labels", "r2"),
    ("input: [4]\n    Linear(1)", 'train: table(x=uniform(0, 1, [50, 4]), y=linspace(0, 9, 50))',
     "loss: MSELoss\n    metrics: [top_k(2)]", "top_k ranks class scores, but MSELoss", "top_k(2)"),
])
def test_meaningless_metric_errors(tmp_path, model, data, train, message, metric):
    (tmp_path / "bc.csv").write_text("a,b,c,d,y\n" + "".join(f"{i},{i % 3},{i % 5},{i % 7},{i % 2}\n" for i in range(40)))
    d = error_of(tmp_path, model, data, train)
    assert message in d.message, d.message
    line = line_of(tmp_path, "metrics")
    assert (d.span.line, d.span.column) == (line, (tmp_path / "s.net").read_text().splitlines()[line - 1].index(metric) + 1)


def test_top_k_of_one_hot_targets_under_a_value_loss_is_measured(tmp_path):
    """MSELoss + one_hot + top_k(2) reported 1.0 whatever the model did."""
    from netspec.ir import CallValue
    from netspec.train.metrics import compute

    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    out = np.array([[0.1, 0.9, 0.5, 0.0], [0.0, 0.9, 0.5, 0.1], [0.9, 0.0, 0.5, 0.1], [0.9, 0.8, 0.0, 0.1]],
                   np.float32)
    got = compute(out, y, (CallValue("top_k", (("k", 2),)), CallValue("accuracy")), "value", "MSELoss", 4)
    assert got == {"top_2": pytest.approx(0.5), "accuracy": pytest.approx(0.25)}


# ---------------------------------------------------------------- what reaches an Embedding

EMBED = "input: [4]\n    embed: Embedding(10, 3)\n    Flatten\n    Linear(3)"


def test_float_measurements_fed_to_an_embedding_are_an_error_at_the_layer(tmp_path):
    """iris's measurements were truncated to ids without a word and trained to chance."""
    d = error_of(tmp_path, EMBED, IRIS, "loss: CrossEntropyLoss")
    assert "Embedding takes integer token ids, but iris.csv:2: column 'sepal_length' holds 5.1" in d.message
    assert (d.span.line, d.span.column) == (line_of(tmp_path, "embed:"), 5)


def test_one_hot_columns_fed_to_an_embedding_are_an_error(tmp_path):
    (tmp_path / "c.csv").write_text("color,size,y\n" + "".join(f"{c},{i % 3},{i % 3}\n" for i, c in
                                                                enumerate(["red", "blue", "green"] * 10)))
    d = error_of(tmp_path, "input: [4]\n    embed: Embedding(10, 3)\n    Flatten\n    Linear(3)",
                 'train: csv("c.csv", target="y", categorical=["color"])', "loss: CrossEntropyLoss")
    assert "categorical=" in d.message and "one-hot" in d.message and d.span.line == line_of(tmp_path, "embed:")


@pytest.mark.parametrize("ids, message", [
    ("randint(0, 12, [40, 4])", "token id 1[01] \\(sample [0-9]+\\) is outside Embedding's 10 ids \\(0 to 9\\)"),
    ("randint(-2, 5, [40, 4])", "token id -[12] \\(sample [0-9]+\\) is outside Embedding's 10 ids \\(0 to 9\\)"),
    ("randint(0, 10, [40, 4]) + 0.5", "Embedding takes integer token ids, but table\\(...\\) sample 0 holds [0-9.]+"),
])
def test_token_ids_out_of_range_or_fractional_are_errors_with_the_value(tmp_path, ids, message):
    import re

    d = error_of(tmp_path, EMBED, f"train: table(x={ids}, y=randint(0, 3, 40))", "loss: CrossEntropyLoss")
    assert re.search(message, d.message), d.message
    assert d.span.line == line_of(tmp_path, "embed:")


def test_whole_float_ids_are_accepted_and_a_bad_test_id_is_caught_by_check(tmp_path):
    """Integer-valued floats (3.0) are ids; an id beyond the table in the test file was an
    internal error (IndexError) at the end of training."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 10, (40, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 40))
    bad = rng.integers(0, 10, (8, 4))
    bad[5, 2] = 10
    np.save(tmp_path / "tx.npy", bad)
    np.save(tmp_path / "ty.npy", rng.integers(0, 3, 8))
    data = 'train: npy(x="x.npy", y="y.npy")'
    load(tmp_path, EMBED, data, "loss: CrossEntropyLoss")  # ok
    d = error_of(tmp_path, EMBED, data + '\n    test: npy(x="tx.npy", y="ty.npy")', "loss: CrossEntropyLoss")
    assert "tx.npy: token id 10 (sample 5) is outside Embedding's 10 ids (0 to 9)" in d.message
    assert d.span.line == line_of(tmp_path, "embed:")
    np.save(tmp_path / "x.npy", np.full((40, 4), -1, np.int64))
    d = error_of(tmp_path, EMBED, data, "loss: CrossEntropyLoss")  # read by check, not only by training
    assert "token id -1 (sample 0)" in d.message


def test_predict_refuses_fractional_or_out_of_range_token_ids(tmp_path):
    """Sibling: predict cast 5.1 to id 5 as training did."""
    from netspec.deploy.predict import token_ids

    with pytest.raises(NetspecError, match="sample 1 holds 5.1, but the model takes integer token ids"):
        token_ids(tmp_path / "a.csv", np.array([[1.0, 2.0], [5.1, 3.0]]), 10)
    with pytest.raises(NetspecError, match=r"token id 12 \(sample 0\) is outside the model's 10 ids"):
        token_ids(tmp_path / "a.csv", np.array([[12.0, 2.0]]), 10)
    assert token_ids(tmp_path / "a.csv", np.array([[9.0, 0.0]]), 10).tolist() == [[9.0, 0.0]]


# ---------------------------------------------------------------- vocabularies from the training rows only


def _split_rows_of(tmp_path, n: int, split: str) -> tuple:
    """(train, val, test) row numbers netspec's split gives a source of n rows."""
    from netspec.data.prepare import split_rows

    c = load(tmp_path, "input: [1]\n    Linear(2)", f"train: table(x=linspace(0, 1, {n}), y=randint(0, 2, {n}))\n"
             f"    split: {split}", "loss: CrossEntropyLoss", read_data=False)
    assert c.data is not None
    return split_rows(np.arange(n), c.data, 0, None)


def test_split_vocabularies_come_from_the_training_rows(tmp_path):
    """categorical= and labels were learned from the whole file: a value seen only in test rows
    became a feature column, and the documented error could not fire."""
    from netspec.data.prepare import prepare

    _, _, test = _split_rows_of(tmp_path, 60, "[0.6, 0.2, 0.2]")
    only_test = int(test[0])
    rows = [f"{i % 7},{'rare' if i == only_test else ['red', 'blue'][i % 2]},{i % 2}" for i in range(60)]
    (tmp_path / "c.csv").write_text("size,color,y\n" + "\n".join(rows) + "\n")
    data = 'train: csv("c.csv", target="y", categorical=["color"])\n    split: [0.6, 0.2, 0.2]'
    message = f"c.csv:{only_test + 2}: column 'color': value 'rare' never occurs in the training data"
    d = error_of(tmp_path, "input: [3]\n    Linear(2)", data, "loss: CrossEntropyLoss")  # check says it
    assert message in d.message
    c = load(tmp_path, "input: [3]\n    Linear(2)", data, "loss: CrossEntropyLoss", read_data=False)
    with pytest.raises(NetspecError, match=message.replace("'", ".")):  # and so does training
        prepare(c)
    labels = [f"{i % 7},red,{'c' if i == only_test else ['a', 'b'][i % 2]}" for i in range(60)]
    (tmp_path / "l.csv").write_text("size,color,y\n" + "\n".join(labels) + "\n")
    d = error_of(tmp_path, "input: [1]\n    Linear(2)",
                 'train: csv("l.csv", target="y", features=["size"])\n    split: [0.6, 0.2, 0.2]',
                 "loss: CrossEntropyLoss")
    assert f"l.csv:{only_test + 2}: column 'y': label 'c' never occurs in the training data" in d.message


def test_subset_rows_left_out_are_never_encoded(tmp_path):
    """Sibling: a value in a row that `subset` leaves out made preparing the data fail."""
    from netspec.data.prepare import prepare

    rows = [f"{i},{'odd' if i == 0 else 'x'},{i % 2}" for i in range(2000)]
    (tmp_path / "s.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    c = load(tmp_path, "input: [2]\n    Linear(2)", 'train: csv("s.csv", target="y", categorical=["b"])\n'
             "    subset: 10", "loss: CrossEntropyLoss", read_data=False)
    p = prepare(c)
    assert p.pre.columns[1] == ["b", "categorical", ["x"]] and len(p.train) == 10


# ---------------------------------------------------------------- the test line says which weights it tested

TINY = ("input: [1]\n    Linear(8)\n    ReLU\n    Linear(1)",
        "train: table(x=linspace(-1, 1, 80), y=2 * x)\n    split: [0.5, 0.25, 0.25]\n    batch_size: 8",
        "loss: MSELoss\n    optimizer: SGD(lr=5.0)\n    epochs: 3\n    metrics: [mae]")


@pytest.mark.slow
def test_train_says_which_epoch_the_test_metrics_come_from(tmp_path):
    """`epoch 30/30 ... val_accuracy 0.9553` then `test: ... 0.9833` came from epoch 10, unsaid."""
    import json
    import re

    spec = write(tmp_path, *TINY)
    r = run("train", spec, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    best = json.loads((tmp_path / "run" / "run.json").read_text())["result"]["best_epoch"]
    assert re.search(rf"^test \(best epoch {best} of 3 by val_loss\): test_loss [0-9.e+-]+  test_mae", r.stdout, re.M), r.stdout
    r = run("eval", str(tmp_path / "run"))  # and eval says which weights it evaluates
    assert f"weights: {tmp_path / 'run' / 'model.pt'} (best epoch {best} of 3 by val_loss)" in r.stdout, r.stdout + r.stderr
    r = run("train", spec, "--out", str(tmp_path / "last"), "--set", "train.save=last", "--epochs", "1")
    assert re.search(r"^test \(last epoch 1 of 1\): test_loss", r.stdout, re.M), r.stdout
    assert ", batch 8, 1 epoch\n" in r.stdout  # not "1 epochs"
    r = run("train", spec, "--out", str(tmp_path / "stop"), "--set",
            'train.early_stopping=EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9)')
    assert re.search(r"^early stopping: `val_loss` has not improved for 1 epoch \(best", r.stdout, re.M), r.stdout


# ---------------------------------------------------------------- summary's Trainable column is computed


def test_summary_trainable_column_and_totals_follow_the_frozen_set(tmp_path):
    """'Trainable: yes' and 'Non-trainable params: 0' were written in, whatever froze."""
    from netspec.tools import summary

    model = "input: [4]\n    stem: { fc1: Linear(8); bn: BatchNorm1d; ReLU }\n    head: Linear(3)"
    c = load(tmp_path, model, IRIS, "loss: CrossEntropyLoss", read_data=False)
    text = summary.summary_text(c)
    assert "Total params: 83\nTrainable params: 83\nNon-trainable params: 0" in text  # 40 + 16 + 27: running stats are buffers
    c = load(tmp_path, model, IRIS, "loss: CrossEntropyLoss\n    freeze: [stem.fc1]", read_data=False)
    text = summary.summary_text(c)
    assert "Total params: 83\nTrainable params: 43\nNon-trainable params: 40" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("  stem", "    fc1", "  head",
                                                                                           "stem", "  fc1", "head"))}
    assert rows["stem"][-1] == "partly" and rows["fc1"][-1] == "no" and rows["head"][-1] == "yes", text


# ---------------------------------------------------------------- refused although torch accepts it


@pytest.mark.parametrize("loss, last", [("BCEWithLogitsLoss", ""), ("BCELoss", "\n    Sigmoid")])
def test_bce_on_probability_targets_is_accepted(tmp_path, loss, last):
    """Soft labels were refused: "the target looks continuous ... BCELoss needs class labels"."""
    from netspec.data.prepare import prepare
    from netspec.train.trainer import train_file

    data = "train: table(x=uniform(0, 1, [60, 2]), y=uniform(0, 1, 60))\n    validation: 0.25"
    c = load(tmp_path, f"input: [2]\n    Linear(1){last}", data, f"loss: {loss}\n    metrics: [accuracy, mae]"
             if loss == "BCELoss" else f"loss: {loss}\n    metrics: [accuracy, auc]")
    p = prepare(c)
    assert p.train.y.dtype == np.float32 and p.train.y.shape == (45, 1)
    assert 0 < p.train.y.min() and p.train.y.max() < 1 and len(np.unique(p.train.y)) == 45  # the probabilities
    if loss == "BCEWithLogitsLoss":  # and it trains
        result = train_file(c.spec.file, ("train.epochs=1",), out_dir=str(tmp_path / "run"), quiet=True)
        assert np.isfinite(result["val_loss"])


def test_bce_targets_outside_zero_one_are_an_error_with_the_value(tmp_path):
    d = error_of(tmp_path, "input: [2]\n    Linear(1)", "train: table(x=uniform(0, 1, [60, 2]), y=linspace(0, 1.5, 60))",
                 "loss: BCEWithLogitsLoss")
    assert "BCEWithLogitsLoss takes targets in [0, 1] (labels or probabilities)" in d.message
    assert "1.01695 (sample 40)" in d.message
    assert d.span.line == line_of(tmp_path, "BCEWithLogitsLoss")


def test_multi_label_bce_on_several_target_columns_is_accepted(tmp_path):
    """Sibling: several 0/1 (or probability) target columns with BCE were 'one class label per sample'."""
    from netspec.data.prepare import prepare

    (tmp_path / "ml.csv").write_text("a,b,t1,t2\n" + "".join(f"{i},{i % 3},{i % 2},{0.25 * (i % 5)}\n"
                                                              for i in range(40)))
    c = load(tmp_path, "input: [2]\n    Linear(2)", 'train: csv("ml.csv", target=["t1", "t2"])',
             "loss: BCEWithLogitsLoss\n    metrics: [accuracy]")
    p = prepare(c)
    assert p.train.y.shape == (40, 2) and p.train.y[:5, 1].tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_more_outputs_than_classes_is_a_warning(tmp_path):
    """CrossEntropyLoss trains fine with unused outputs; it was an error."""
    from netspec.data.prepare import prepare

    c = load(tmp_path, "input: [4]\n    Linear(5)", IRIS, "loss: CrossEntropyLoss(weight=[1, 1, 2, 1, 1])")
    assert any("the model outputs [5] but the training data has 3 classes" in w.message and w.severity == "warning"
               for w in c.warnings)
    assert prepare(c).pre.classes == ["setosa", "versicolor", "virginica"]
    c = load(tmp_path, "input: [1, 28, 28]\n    Flatten\n    Linear(12)", 'train: mnist(split="train")',
             "loss: CrossEntropyLoss", read_data=False)
    assert any("the model outputs [12] but mnist has 10 classes" in w.message for w in c.warnings)
    d = error_of(tmp_path, "input: [4]\n    Linear(2)", IRIS, "loss: CrossEntropyLoss")  # fewer: torch fails
    assert "the model outputs [2] but the training data has 3 classes" in d.message
    d = error_of(tmp_path, "input: [4]\n    Linear(5)", IRIS, "loss: CrossEntropyLoss(weight=[1, 1, 2])")
    assert "weight= has 3 values but the model outputs [5] class scores" in d.message


def test_cross_entropy_on_probability_rows_is_accepted(tmp_path):
    """torch's CrossEntropyLoss takes class probabilities as wide as the output (distillation)."""
    from netspec.data.prepare import prepare

    (tmp_path / "soft.csv").write_text("a,b,p0,p1,p2\n" + "".join(
        f"{i},{i % 3},{0.2 * (i % 2)},{0.5},{0.5 - 0.2 * (i % 2)}\n" for i in range(30)))
    c = load(tmp_path, "input: [2]\n    Linear(3)", 'train: csv("soft.csv", target=["p0", "p1", "p2"])',
             "loss: CrossEntropyLoss\n    metrics: [accuracy]")
    p = prepare(c)
    assert p.train.y.dtype == np.float32 and p.train.y.shape == (30, 3)


def test_many_whole_targets_under_a_class_loss_with_as_many_outputs_is_a_warning(tmp_path):
    """diabetes's 214 progression values as 214 classes: torch trains it; a warning says what it means."""
    c = load(tmp_path, "input: [10]\n    Linear(214)", DIABETES, "loss: CrossEntropyLoss")
    assert any("the target looks continuous" in w.message for w in c.warnings)


def _float_images(tmp_path, low: float = 0.0, high: float = 1.0) -> str:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "fx.npy", rng.uniform(low, high, (64, 1, 28, 28)).astype(np.float32))
    np.save(tmp_path / "fy.npy", rng.integers(0, 3, 64))
    return 'train: npy(x="fx.npy", y="fy.npy")\n    validation: 0.25\n    batch_size: 16'


def test_augment_works_on_float_images_from_npy(tmp_path):
    """[1, 28, 28] float samples were refused: "augment works on images ...; these samples are [1, 28, 28]"."""
    from netspec.train.trainer import train_file

    data = _float_images(tmp_path) + "\n    augment: [RandomCrop(28, padding=2), RandomHorizontalFlip()]"
    c = load(tmp_path, "input: [1, 28, 28]\n    Flatten\n    Linear(3)", data, "loss: CrossEntropyLoss")
    train_file(c.spec.file, ("train.epochs=1",), out_dir=str(tmp_path / "run"), quiet=True)


def test_augment_errors_state_the_real_reason(tmp_path):
    d = error_of(tmp_path, "input: [4]\n    Linear(3)", IRIS + "\n    augment: [RandomHorizontalFlip()]",
                 "loss: CrossEntropyLoss")
    assert "augment works on samples shaped [channels, height, width]; the samples of csv(...) are [4]" in d.message
    data = _float_images(tmp_path, -2.0, 3.0) + "\n    augment: [RandomCrop(28, padding=2), ColorJitter(brightness=0.2)]"
    d = error_of(tmp_path, "input: [1, 28, 28]\n    Flatten\n    Linear(3)", data, "loss: CrossEntropyLoss")
    assert "ColorJitter works on pixel values in [0, 1]" in d.message and "from -2 to 3" in d.message
    assert d.span.line == line_of(tmp_path, "ColorJitter")


# ---------------------------------------------------------------- padding layers take the shapes torch takes

PAD_ROWS = [row for row in __import__("netspec.catalogue", fromlist=["LAYERS_LIST"]).LAYERS_LIST
            if row.category == "padding"]


@pytest.mark.parametrize("row", PAD_ROWS, ids=[r.name for r in PAD_ROWS])
def test_padding_rows_accept_every_rank_torch_pads_per_sample(row, tmp_path):
    """ConstantPad3d refused [C, H, W] (torch pads its last three dims: channels too). For each
    per-sample rank, netspec accepts exactly when torch pads a batch of it without touching the
    batch axis, and infers torch's shape."""
    import torch

    from netspec.builder import build_model

    nd = int(row.name[-2])
    text = f"{row.name}(({', '.join(['1', '2'] * nd)}){', 0.5' if row.name.startswith('Constant') else ''})"
    for rank in range(1, 6):
        sample = [3] * max(0, rank - nd) + [5] * min(rank, nd)
        module = getattr(torch.nn, row.name)(tuple([1, 2] * nd), *([0.5] if row.name.startswith("Constant") else []))
        try:
            out = module(torch.randn(2, *sample))
            want = list(out.shape[1:]) if out.shape[0] == 2 else None  # padding the batch axis is no padding
        except (RuntimeError, ValueError, NotImplementedError):
            want = None
        spec = tmp_path / f"p{rank}.net"
        spec.write_text(f"model m {{\n    input: {sample}\n    pad: {text}\n}}\n")
        try:
            got = list(netspec.load(str(spec)).model.output_shape)
        except NetspecError:
            got = None
        assert got == want, (row.name, sample, got, want)
        if got is not None:
            c = netspec.load(str(spec))
            x = torch.randn(2, *sample)
            assert torch.equal(build_model(c.model)(x), module(x))


def test_linear_on_a_feature_map_is_a_warning_as_torch_applies_it_per_position(tmp_path):
    """Audit: torch's Linear takes [..., features]; netspec refused [C, H, W] outright."""
    import torch

    from netspec.builder import build_model

    c = load(tmp_path, "input: [2, 3, 6]\n    fc: Linear(4)", IRIS, "loss: MSELoss", read_data=False)
    assert c.model.output_shape == (2, 3, 4)
    assert any("Linear applies to the last dimension of [2, 3, 6]" in w.message for w in c.warnings)
    assert build_model(c.model)(torch.randn(5, 2, 3, 6)).shape == (5, 2, 3, 4)


# ---------------------------------------------------------------- regression that converges: normalize_target

DIABETES_NET = ("input: [10]\n    Linear(32)\n    ReLU\n    Linear(1)",
                DIABETES + "\n    split: [0.7, 0.15, 0.15]\n    normalize: standard\n    normalize_target: standard"
                "\n    batch_size: 32", "loss: MSELoss\n    optimizer: Adam(lr=0.01)\n    epochs: 3\n    metrics: [mae, r2]")


def test_large_regression_targets_suggest_normalize_target(tmp_path):
    c = load(tmp_path, "input: [10]\n    Linear(1)", DIABETES, "loss: MSELoss")
    w = next(w for w in c.warnings if "normalize_target" in (w.help or ""))
    assert "the targets are large (root mean square 171; mean 152, standard deviation 77)" in w.message and w.span.line == line_of(tmp_path, "train:")
    c = load(tmp_path, "input: [10]\n    Linear(1)", DIABETES + "\n    normalize_target: none", "loss: MSELoss")
    assert not any("normalize_target" in (w.help or "") for w in c.warnings)  # said explicitly: no advice
    c = load(tmp_path, "input: [3]\n    Linear(1)", 'train: csv("iris.csv", target="petal_width", '
             'features=["sepal_length", "sepal_width", "petal_length"])', "loss: MSELoss")
    assert not any("normalize_target" in (w.help or "") for w in c.warnings)  # small targets


def test_normalize_target_is_for_value_targets_only(tmp_path):
    d = error_of(tmp_path, "input: [4]\n    Linear(3)", IRIS + "\n    normalize_target: standard",
                 "loss: CrossEntropyLoss", read_data=False)
    assert "normalize_target scales regression targets, but CrossEntropyLoss trains on class labels" in d.message
    assert d.span.line == line_of(tmp_path, "normalize_target")


@pytest.mark.slow
def test_normalize_target_trains_on_scaled_targets_and_reports_in_units(tmp_path):
    """Statistics from the training rows; metrics, eval, the exported graph and predict in the
    target's units (the diabetes progression, 25..346)."""
    import onnxruntime as ort
    import torch

    from netspec.data.prepare import prepare
    from netspec.deploy.export import export_file
    from netspec.train.evaluate import evaluate_file
    from netspec.train.trainer import train_file

    spec = write(tmp_path, *DIABETES_NET)
    c = netspec.load(spec, read_data=True)
    p = prepare(c)
    y = p.train.y.reshape(-1).astype(np.float64)
    assert p.pre.target_shift == pytest.approx([y.mean()]) and p.pre.target_div == pytest.approx([y.std()])
    result = train_file(spec, out_dir=str(tmp_path / "run"), quiet=True)
    assert result["test_mae"] > 20 and result["test_loss"] < 3  # mae in units; the loss on standardised targets
    again = evaluate_file(spec, str(tmp_path / "run" / "model.pt"))
    assert again["test_mae"] == pytest.approx(result["test_mae"], rel=1e-5)
    report = export_file(spec, str(tmp_path / "d.onnx"), str(tmp_path / "run" / "model.pt"))
    session = ort.InferenceSession(report["output"], providers=["CPUExecutionProvider"])
    x = np.asarray(p.test.x, np.float32)
    out = session.run(None, {"input": x})[0]
    assert np.abs(out - p.test.y).mean() == pytest.approx(result["test_mae"], rel=1e-4)  # the graph de-normalises
    r = run("eval", str(tmp_path / "d.onnx"), "--spec", spec, "--json")
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout)["test_mae"] == pytest.approx(result["test_mae"], rel=1e-4)
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)  # a plain state_dict


# ---------------------------------------------------------------- smaller slips


def test_diff_shows_a_full_batch_as_full(tmp_path):
    a = write(tmp_path, "input: [4]\n    Linear(3)", IRIS + "\n    batch_size: full", "loss: CrossEntropyLoss", "a.net")
    b = write(tmp_path, "input: [4]\n    Linear(3)", IRIS + "\n    batch_size: 16", "loss: CrossEntropyLoss", "b.net")
    r = run("diff", a, b)
    assert "data.batch_size  full -> 16" in r.stdout, r.stdout
    import json

    changes = json.loads(run("diff", a, b, "--json").stdout)["settings"]
    assert {"key": "data.batch_size", "a": "full", "b": "16"} in changes


def test_check_json_prints_the_summary_object_on_success(tmp_path):
    import json

    spec = write(tmp_path, "input: [10]\n    Linear(1)", DIABETES, "loss: MSELoss")
    r = run("check", "--json", spec)
    assert r.returncode == 0 and r.stderr == ""
    (summary,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert summary["ok"] is True and summary["file"] == spec and summary["model"] == "m"
    assert summary["input_shape"] == [10] and summary["output_shape"] == [1] and summary["parameters"] == 11
    assert [w["severity"] for w in summary["warnings"]] == ["warning"]
    assert "normalize_target" in summary["warnings"][0]["help"]


def test_interrupted_training_says_how_to_resume(tmp_path, monkeypatch):
    """Ctrl-C printed only `interrupted`. (Ctrl-C arrives here after the first epoch's checkpoint.)"""
    import sys

    from click.testing import CliRunner

    from netspec import cli
    from netspec.train import loop

    real = loop.fit

    def fit(lp, state, epochs, train, validate, monitor, end_of_epoch, samples=None, start_epoch=None):
        def end(row, stop):
            end_of_epoch(row, stop)
            raise KeyboardInterrupt

        return real(lp, state, epochs, train, validate, monitor, end, samples, start_epoch)

    monkeypatch.setattr(loop, "fit", fit)
    monkeypatch.chdir(tmp_path)  # runs/m lands here
    spec = write(tmp_path, *TINY)
    args = ["train", spec, "--quiet", "--set", "train.epochs=5"]
    monkeypatch.setattr(sys, "argv", ["netspec", *args])
    r = CliRunner().invoke(cli.main, args)
    assert r.exit_code == 130
    assert "interrupted at epoch 2; " in r.output and "checkpoint.pt holds the last checkpoint; resume with:" in r.output
    command = r.output.strip().splitlines()[-1].strip()
    assert command == f"netspec train {spec} --quiet --set train.epochs=5 --out runs/m --resume"
