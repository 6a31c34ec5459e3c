"""Text columns: tokenizers, the data constants, padding that never changes a result (torch and
onnxruntime), the run folder, export, predict on raw text, eval, `netspec data`, and the bad
inputs. The data are small CSVs of made-up sentences written by the tests themselves.

The oracle of padding invariance is torch itself: a text alone, run through the layers' own
torch forward (no padding, no mask), equals the same text inside a batch of longer texts run
through netspec's masked model, in torch and in the exported ONNX graph through onnxruntime.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import netspec
from netspec.errors import NetspecError
from tests.conftest import netspec_cmd

WORDS = {
    "animal": "bird fish dog cat horse wing feather fur tail paw beak nest swim fly bark",
    "food": "bread cheese soup apple sauce sweet salty bake cook eat dish fruit sugar meal",
    "tool": "hammer blade handle metal cut drill screw saw wood steel edge sharp lever nail",
}
COMMON = "a an the of with that is used for small large any various kind by in or".split()


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = sorted(WORDS)[i % 3]
        own = WORDS[label].split()
        words = [str(rng.choice(own if rng.random() < 0.5 else COMMON)) for _ in range(int(rng.integers(1, 14)))]
        rows.append((" ".join(words).capitalize() + ".", label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("texts")
    write_csv(folder / "train.csv", sentences(240, 0))
    write_csv(folder / "test.csv", sentences(60, 1))
    return folder


DATA = '''
data {{
    train: csv("{folder}/train.csv", target="label", text="text")
    test: csv("{folder}/test.csv", target="label", text="text")
    tokenizer: {tokenizer}
    {extra}
    batch_size: 16
}}
train {{
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-2)
    epochs: 2
    metrics: [accuracy]
}}
'''


def text_spec(folder: Path, body: str, tokenizer: str = "words()", extra: str = "max_len: 24",
              data: Path | None = None) -> Path:
    """A model of `body` over the CSVs in `data` (default: `folder`), written to folder/spec.net."""
    spec = folder / "spec.net"
    spec.write_text(f"model m {{\n    input: [_]\n    embed: Embedding(vocab_size, 8)\n{body}\n    "
                    f"head: Linear(num_classes)\n}}\n" + DATA.format(folder=data or folder, tokenizer=tokenizer,
                                                                   extra=extra))
    return spec


# ---------------------------------------------------------------- tokenizers


def test_tokenizer_ids_specials_columns_and_cache(monkeypatch, tmp_path):
    from netspec.data import text

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cells = ["The dog barks.", "a [PAD] and [SEP] dog", "", "Café"]
    settings = text.TokenizerSettings("words", True, 1, None)
    vocab = text.learn_vocabulary([cells], settings)
    tok = vocab.tokenizer()
    assert tok.token_to_id("[PAD]") == 0 and tok.token_to_id("[UNK]") == 1
    ids, lengths = text.encode_texts(tok, [["the dog", "[PAD] dog zebra", ""]], None)
    assert ids.dtype == np.int32 and ids.shape == (3, 3) and lengths.tolist() == [2, 3, 0]
    assert ids[1, 0] == text.UNK_ID and ids[1, 2] == text.UNK_ID  # "[PAD]" written in a text is a word; zebra unknown
    assert ids[2].tolist() == [0, 0, 0]
    cut, full = text.encode_texts(tok, [["the dog barks"]], 2)
    assert cut.shape == (1, 2) and full.tolist() == [3]
    two = text.learn_vocabulary([cells, ["x", "y", "z", "w"]], settings).tokenizer()
    assert two.token_to_id("[SEP]") == 2
    joined, _ = text.encode_texts(two, [["dog", "", "[SEP]"], ["x", "y", "z"]], None)
    assert joined[0, 1] == 2 and joined[1, 0] == 2 and joined[2, 0] == text.UNK_ID  # only the joins are [SEP]
    # the cache: the same texts and settings never train again
    monkeypatch.setattr(text, "train_tokenizer", lambda *a, **k: pytest.fail("trained again"))
    assert text.learn_vocabulary([cells], settings).tokenizer_json == vocab.tokenizer_json
    for kind in ("chars", "bpe"):
        monkeypatch.undo()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        v = text.learn_vocabulary([cells * 5], text.TokenizerSettings(kind, False, 1, 40 if kind == "bpe" else None))
        assert v.vocab_size > 2 and v.tokenizer().encode("dog").ids


# ---------------------------------------------------------------- padding invariance, torch and onnxruntime

BODIES = {
    "attention": "    att: MultiheadAttention(2, add_bias_kv=true)\n    pool: Max(1)",
    "transformer": "    pos: PositionalEmbedding(24)\n    enc: TransformerEncoderLayer(2, dim_feedforward=16)\n    pool: Mean(1)",
    "transformer_norm_first": "    enc: repeat 2 { TransformerEncoderLayer(2, dim_feedforward=16, norm_first=true) }\n"
                              "    LayerNorm\n    Last",
    "mean": "    pool: Mean(1)",
    "max": "    pool: Max(1)",
    "last": "    pool: Last",
    "lstm": "    rnn: LSTM(6, num_layers=2)\n    Last",
    "gru": "    rnn: GRU(6)\n    pool: Mean(1)",
    "rnn": '    rnn: RNN(6, nonlinearity="relu")\n    pool: Max(1)',
    "bilstm": "    rnn: LSTM(6, num_layers=2, bidirectional=true)\n    Last",
    "bigru": "    rnn: GRU(6, bidirectional=true)\n    pool: Mean(1)",
    "branches": "    res: residual { MultiheadAttention(2) }\n    both: concat(dim=1) { Mean(1); Max(1); Last }",
}


def plain(module, x):
    """Torch's own forward of each layer, without masks: the truth for a text alone."""
    import torch

    from netspec import layers

    if isinstance(module, layers.MaskedSequential):
        y = x
        for child in module.children():
            y = plain(child, y)
        return x + y if isinstance(module, layers.MaskedResidual) else y
    if isinstance(module, layers.Concat):
        return torch.cat([plain(b, x) for b in module.children()], dim=module.dim)
    return module(x)


def batch_of(texts: list[np.ndarray], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    width = width or max(1, max(len(t) for t in texts))
    ids = np.zeros((len(texts), width), np.int64)
    mask = np.zeros((len(texts), width), np.int64)
    for i, t in enumerate(texts):
        ids[i, :len(t)], mask[i, :len(t)] = t, 1
    return ids, mask


@pytest.mark.parametrize("kind", list(BODIES))
def test_a_text_alone_equals_it_inside_a_padded_batch(kind, texts, tmp_path):
    import onnxruntime as ort
    import torch

    from netspec.builder import build_model
    from netspec.deploy.export import export_model

    checked = netspec.load(str(text_spec(tmp_path, BODIES[kind], data=texts)))
    assert checked.model.padded
    net = build_model(checked.model, seed=3).eval()
    vocab = int(dict(checked.model.root.children[0].kwargs)["num_embeddings"])
    rng = np.random.default_rng(7)
    samples = [rng.integers(1, vocab, n) for n in (1, 3, 7, 12, 0, 5)]
    truth = []
    with torch.no_grad():
        for t in samples:  # alone: no padding at all (an empty text is one padding token)
            truth.append(plain(net, torch.from_numpy(batch_of([t])[0]))[0].numpy())
        for width in (None, 20):
            ids, _ = batch_of(samples, width)
            together = net(torch.from_numpy(ids)).numpy()
            assert np.abs(together - np.stack(truth)).max() <= 1e-5, kind
    path = tmp_path / "m.onnx"
    report = export_model(checked, net, path)
    assert report["padding_invariance"] <= 1e-5
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for width in (None, 24):
        ids, mask = batch_of(samples, width)
        got = session.run(None, {"input": ids, "mask": mask})[0]
        assert np.abs(got - np.stack(truth)).max() <= 1e-5, kind
    for t, want in zip(samples, truth):
        ids, mask = batch_of([t])
        assert np.abs(session.run(None, {"input": ids, "mask": mask})[0][0] - want).max() <= 1e-5


@pytest.mark.parametrize("proj", [0, 3])
def test_bidirectional_lstm_matches_packed_sequences(proj):
    """The masked bidirectional LSTM computes what torch's PackedSequence does (projections too)."""
    import torch

    from netspec.layers import LSTM

    torch.manual_seed(0)
    lstm = LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True, proj_size=proj).eval()
    lengths = torch.tensor([5, 2, 1, 4])
    x = torch.randn(4, 5, 4)
    mask = torch.arange(5)[None] < lengths[:, None]
    with torch.no_grad():
        ours = lstm(x, mask)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        ref, _ = torch.nn.utils.rnn.pad_packed_sequence(torch.nn.LSTM.forward(lstm, packed)[0], batch_first=True)
    assert torch.allclose(ours, ref, atol=1e-6)


# ---------------------------------------------------------------- constants, check, data


@pytest.mark.parametrize("labels", ["words", "numbers", "listed"])
def test_check_and_training_learn_from_the_same_rows(labels, texts, tmp_path):
    """vocab_size and num_classes at check time are the training split's: check splits the rows
    (validation held out, stratified) before it can encode the targets, and must pick the
    rows training picks, whatever the labels look like."""
    from netspec.data.encode import Encoder
    from netspec.data.prepare import csv_training_rows, prepare
    from netspec.data.sources import read_csv

    names = {"words": ["tool", "animal", "food"], "numbers": ["2", "0", "1"], "listed": ["tool", "animal", "food"]}
    rows = [(t, names[labels][sorted(WORDS).index(y)]) for t, y in sentences(90, 5)]
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", rows[:10])
    extra = "max_len: 24\n    validation: 0.3\n    stratify: true" + \
        ('\n    labels: ["tool", "food", "animal"]' if labels == "listed" else "")
    checked = netspec.load(str(text_spec(tmp_path, "    pool: Mean(1)", "words(min_freq=2)", extra)), read_data=True)
    data = prepare(checked)
    assert dict(checked.constants)["vocab_size"] == data.pre.vocab_size
    assert dict(checked.constants)["num_classes"] == 3
    table = read_csv(tmp_path / "train.csv")
    enc = Encoder(checked, None)
    enc.learn_csv(table, np.arange(len(table)))
    before = csv_training_rows(table, checked.data, 0)  # check's: before any encoder
    assert np.array_equal(before, csv_training_rows(table, checked.data, 0, enc))  # training's
    assert len(before) == len(data.train) == 63


BAD = [
    # (spec edit, csv edit or None, expected message, the text at the reported position)
    ("tokenizer: words(min_freq=500)", None, "vocabulary is empty", "words(min_freq=500)"),
    ("Embedding(vocab_size, 8)->Embedding(10, 8)", None, "has 10 rows, but the tokenizer's vocabulary has", "embed"),
    ("input: [_]->input: [24]", None, "but its input is [24]", "[24]"),
    ('text="text")->text="txt")', None, "no column 'txt'", 'text="txt"'),
    ('text="text")->text="text", features=["text"])', None, "is a text column and also listed in `features`",
     'features=["text"]'),
    ("max_len: 24->max_len: 40", "PositionalEmbedding", "holds 24 positions, but texts have up to 40 tokens", "pos"),
    (None, "nonutf8", "train.csv:3: not UTF-8: byte 0xe9", "csv("),
    (None, "long", "train.csv:2: a cell longer than 1,048,576 characters", "csv("),
    ("max_len: 24->", "huge", "texts of 150,000 tokens needs about", 'text="text"'),
]


@pytest.mark.parametrize("edit,data,message,at", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_text_inputs_are_errors_at_spec_positions(edit, data, message, at, texts, tmp_path):
    import shutil

    for name in ("train.csv", "test.csv"):
        shutil.copy(texts / name, tmp_path / name)
    body = "    pos: PositionalEmbedding(24)\n    pool: Mean(1)" if data == "PositionalEmbedding" else \
        "    att: MultiheadAttention(2)\n    pool: Mean(1)" if data == "huge" else "    pool: Mean(1)"
    spec = text_spec(tmp_path, body)
    text = spec.read_text()
    if edit and "->" in edit:
        old, new = edit.split("->")
        text = text.replace(old, new)
    elif edit:
        text = text.replace("tokenizer: words()", edit)
    spec.write_text(text)
    if data == "nonutf8":
        (tmp_path / "train.csv").write_bytes((tmp_path / "train.csv").read_bytes().replace(b"\n", b"\nCaf\xe9 x,food\n", 2)
                                             .replace(b"\nCaf\xe9 x,food\n", b"\n", 1))
    if data == "huge":  # no max_len, and a training text far longer than memory allows a batch of
        lines = (tmp_path / "train.csv").read_text().splitlines()
        (tmp_path / "train.csv").write_text("\n".join([lines[0], "bird " * 150_000 + ",animal", *lines[1:]]) + "\n")
    if data == "long":
        lines = (tmp_path / "train.csv").read_text().splitlines()
        (tmp_path / "train.csv").write_text("\n".join([lines[0], "word " * 300_000 + ",food", *lines[1:]]) + "\n")
    with pytest.raises(NetspecError) as info:
        netspec.load(str(spec), read_data=True)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert any(message in d.message for d in errors), info.value.render()
    d = next(d for d in errors if message in d.message)
    line = text.splitlines()[d.span.line - 1]
    assert line[d.span.column - 1:].startswith(at), (line, d.span)


def test_tokenizer_without_text_and_empty_texts(tmp_path, texts):
    write_csv(tmp_path / "num.csv", [("1", "x"), ("2", "y")], ("a", "label"))
    spec = tmp_path / "n.net"
    spec.write_text(f'model m {{\n input: [1]\n Linear(2)\n}}\ndata {{\n train: csv("{tmp_path}/num.csv", target="label")\n'
                    ' tokenizer: bpe(vocab_size=100)\n}\ntrain { loss: CrossEntropyLoss }\n')
    with pytest.raises(NetspecError) as info:
        netspec.load(str(spec))
    assert "`tokenizer:` is for text columns" in info.value.render()
    spec.write_text(f'model m {{\n input: [_]\n Embedding(10, 4)\n Mean(1)\n Linear(2)\n}}\ndata {{\n train: csv('
                    f'"{tmp_path}/num.csv", target="label", text="txt")\n test: csv("{tmp_path}/num.csv", '
                    'target="label", text="a")\n}\ntrain { loss: CrossEntropyLoss }\n')
    with pytest.raises(NetspecError) as info:  # which one is wrong is not known before the files are read
        netspec.load(str(spec))
    assert 'the test source reads the text column(s) ["a"], the training source ["txt"]' in info.value.render()
    rows = sentences(30, 3)
    rows[4] = ("", rows[4][1])
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", rows)
    checked = netspec.load(str(text_spec(tmp_path, "    pool: Mean(1)")), read_data=True)
    assert any("is empty" in w.message and "train.csv:6" in w.message for w in checked.warnings)


def test_num_classes_of_other_sources_and_lets(tmp_path):
    """`num_classes` also counts the classes of other sources (here: a CSV of numbers); a `let`
    of the name wins, and then the data need not be there."""
    write_csv(tmp_path / "num.csv", [(str(i), "abc"[i % 3]) for i in range(12)], ("a", "label"))
    spec = tmp_path / "n.net"
    spec.write_text(f'model m {{\n input: [1]\n Linear(num_classes)\n}}\ndata {{\n train: csv("{tmp_path}/num.csv", '
                    'target="label")\n}\ntrain { loss: CrossEntropyLoss }\n')
    assert dict(netspec.load(str(spec)).constants)["num_classes"] == 3
    spec.write_text(spec.read_text().replace("num_classes", "vocab_size"))
    with pytest.raises(NetspecError) as info:
        netspec.load(str(spec))
    assert "`vocab_size` is not defined by this data" in info.value.render()
    spec.write_text("let num_classes = 4\n" + spec.read_text().replace("vocab_size", "num_classes")
                    .replace("num.csv", "gone.csv"))
    assert netspec.load(str(spec)).model.output_shape == (4,)


# ---------------------------------------------------------------- the whole way: train, export, predict, eval


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_train_export_predict_and_eval_on_raw_text(texts, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(texts, data)
    spec = text_spec(tmp_path, "    pos: PositionalEmbedding(24)\n    enc: TransformerEncoderLayer(2, dim_feedforward=16, "
                     "dropout=0.0)\n    pool: Mean(1)", extra="max_len: 24\n    bucket: true", data=data)
    r = cli("train", str(spec), "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    tokenizer = (run / "tokenizer.json").read_text()
    import torch

    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert json.loads(ckpt["preprocessing"])["tokenizer"] == tokenizer
    r = cli("export", str(spec), "--weights", "run/model.pt", "-o", "m.onnx", cwd=tmp_path)
    assert r.returncode == 0 and "a text alone" in r.stdout, r.stdout + r.stderr
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["preprocessing"])["tokenizer"] == tokenizer
    (tmp_path / "few.txt").write_text("a bird with a long tail\n\nsweet bread and cheese\n")
    script = ("import sys\nfrom netspec.cli import main\nsys.argv = ['netspec', 'predict', 'm.onnx', '--json', "
              "'--text', 'a sharp steel blade', 'few.txt', '" + str(texts / "test.csv") + "']\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert [x["input"] for x in results[:3]] == ["'a sharp steel blade'", "few.txt:1", "few.txt:3"]
    assert len(results) == 63 and results[3]["input"].endswith("test.csv:2")
    r1 = cli("eval", str(spec), "--weights", "run/model.pt", "--json", cwd=tmp_path)
    r2 = cli("eval", "m.onnx", "--spec", str(spec), "--json", cwd=tmp_path)
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    assert a["samples"] == b["samples"] == 60 and abs(a["test_accuracy"] - b["test_accuracy"]) < 1e-9
    assert abs(a["test_loss"] - b["test_loss"]) < 1e-4
    r = cli("data", str(spec), cwd=tmp_path)
    assert r.returncode == 0 and "vocabulary:" in r.stdout and "[UNK]" in r.stdout and "tokens |" in r.stdout
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nna\xefve\n")
    r = cli("predict", "m.onnx", str(bad), cwd=tmp_path)
    assert r.returncode == 1 and "bad.txt:2: not UTF-8" in r.stderr and "Traceback" not in r.stderr
    r = cli("predict", "m.onnx", str(EXAMPLE_DIGIT), cwd=tmp_path)
    assert r.returncode == 1 and "this model reads texts" in r.stderr
    r = cli("predict", "m.onnx", "--text", "", "--text", "  ", "--text", "a bird", cwd=tmp_path)  # said, not hidden
    assert r.returncode == 0 and "warning: '' (and 1 more): empty text" in r.stderr, r.stderr
    (tmp_path / "long.txt").write_text("short\n" + "tree " * 220_000 + "\n")  # 1.1M characters: as training refuses
    r = cli("predict", "m.onnx", "long.txt", cwd=tmp_path)
    assert r.returncode == 1 and "long.txt:2: a text of 1,100,000 characters" in r.stderr, r.stderr
    shutil.rmtree(data)  # a run folder needs no data for its vocab_size: run.json recorded it
    r = cli("export", "run", "-o", "again.onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert cli("summary", "run", cwd=tmp_path).returncode == 0
    r = cli("check", str(spec), cwd=tmp_path)
    assert r.returncode == 1 and "no such file" in r.stderr


EXAMPLE_DIGIT = Path(__file__).resolve().parent.parent / "examples" / "digits" / "7.png"


@pytest.mark.slow
def test_bucketed_training_resumes_exactly(texts, tmp_path):
    """`bucket: true` batches are a function of the seed and the epoch: a run stopped after
    epoch 1 and resumed ends with the weights of an uninterrupted run."""
    import torch

    from netspec.train.trainer import train_file

    spec = text_spec(tmp_path, "    rnn: GRU(6, bidirectional=true)\n    pool: Max(1)", extra="max_len: 24\n    bucket: true",
                     data=texts)
    train_file(str(spec), ("train.epochs=2",), out_dir=str(tmp_path / "a"), quiet=True)
    train_file(str(spec), ("train.epochs=1",), out_dir=str(tmp_path / "b"), quiet=True)
    train_file(str(spec), ("train.epochs=2",), out_dir=str(tmp_path / "b"), resume=True, quiet=True)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_int8_export_of_a_text_model_quantizes_its_embedding_table(texts, tmp_path):
    """A text model's weights are mostly its Embedding table (an ONNX Gather): dynamic int8
    left it fp32, so the .int8.onnx was as large as the fp32 file (2.79 MB -> 2.79 MB)."""
    import onnx

    spec = text_spec(tmp_path, "    pool: Mean(1)", tokenizer="chars()", extra="max_len: 24", data=texts)
    spec.write_text(spec.read_text().replace("Embedding(vocab_size, 8)", "Embedding(vocab_size, 256)"))
    r = cli("train", str(spec), "--out", "run", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("export", "run", "-o", "m.onnx", "--quantize", "int8", "--max-metric-drop", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size, r.stdout
    tables = [i for i in onnx.load(str(int8)).graph.initializer if len(i.dims) == 2 and i.dims[1] == 256]
    assert tables and all(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for t in tables)
    r = cli("predict", "m.int8.onnx", "--text", "a sharp steel blade", cwd=tmp_path)
    assert r.returncode == 0 and "%" in r.stdout, r.stderr
