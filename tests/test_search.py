"""The `search` section, checked before any trial (checker/search.py), and `--set` reaching
every path `netspec diff` prints (checker/overrides.py). No training here: test_tune.py
runs studies."""

from __future__ import annotations

import subprocess
import sys

import pytest

import netspec
from netspec.errors import NetspecError
from netspec.tools.diff import compare_settings
from tests.conftest import FIXTURES, netspec_cmd

IRIS = FIXTURES / "data" / "iris.csv"

BASE = f"""let hidden = 8
model iris {{
    input: [4]
    fc1: Linear(hidden)
    ReLU
    Reshape([2, hidden // 2])
    Flatten
    Linear(3)
}}
data {{
    train: csv("{IRIS}", target="species")
    validation: 0.2
    batch_size: 16
}}
train {{
    loss: CrossEntropyLoss
    optimizer: SGD(lr=1e-3)
    epochs: 2
    metrics: [accuracy]
}}
"""


def check(search: str, base: str = BASE, name: str = "s.net"):
    return netspec.check(netspec.parse(base + "search {\n" + search + "\n}\n", name))


def errors(search: str, base: str = BASE) -> list:
    with pytest.raises(NetspecError) as e:
        check(search, base)
    return [d for d in e.value.diagnostics if d.severity == "error"]


SEARCH_LINE = BASE.count("\n") + 2  # the first line inside `search {`


def test_search_space_is_checked_into_a_config():
    c = check("""    trials: 12
    metric: val_accuracy
    sampler: random
    pruner: median
    hidden: choice(4, 16, 2 * 32)
    train.optimizer.lr: loguniform(1e-4, 0.5)
    data.batch_size: int(8, 32, step=8)
    train.optimizer.momentum: uniform(0, 0.9)
    train.loss: choice(CrossEntropyLoss, CrossEntropyLoss(label_smoothing=0.1))""")
    s = c.search
    assert (s.trials, s.metric, s.minimize, s.sampler, s.pruner) == (12, "val_accuracy", False, "random", "median")
    by = {p.key: p for p in s.params}
    assert by["hidden"].kind == "choice" and by["hidden"].labels == (4, 16, 64)
    assert by["train.optimizer.lr"].kind == "loguniform" and (by["train.optimizer.lr"].low, by["train.optimizer.lr"].high) \
        == (1e-4, 0.5)
    assert (by["data.batch_size"].low, by["data.batch_size"].high, by["data.batch_size"].step) == (8, 32, 8)
    assert by["train.loss"].labels == ("CrossEntropyLoss", "CrossEntropyLoss(label_smoothing=0.1)")
    assert c.warnings == ()


def test_defaults_metric_is_the_runs_monitor_and_loss_like_metrics_are_minimised():
    s = check("    hidden: choice(4, 8)").search
    assert (s.metric, s.minimize, s.trials, s.sampler, s.pruner) == ("val_loss", True, 20, "tpe", "none")
    s = check("    hidden: choice(4, 8)", BASE.replace("    validation: 0.2\n", "")).search
    assert s.metric == "loss"


@pytest.mark.parametrize("search, line, col, message, hint", [
    ("hiden: choice(4, 8)", 0, 5, "unknown search key `hiden`", "did you mean `hidden`?"),
    ("train.optimizer.lrr: loguniform(1e-4, 1e-1)", 0, 5, "SGD has no argument `lrr`",
     "did you mean `train.optimizer.lr`?"),
    ("train.epoch: choice(1, 2)", 0, 5, "unknown key `epoch` in train", "did you mean `train.epochs`?"),
    ("train.optimizer.lr: loguniform(0, 1)", 0, 36, "loguniform needs bounds above 0, got 0", None),
    ("data.batch_size: int(5, 1)", 0, 22, "int(5, 1): the low bound must be below the high one", "int(1, 5)"),
    ("train.epochs: choice()", 0, 19, "choice() needs at least one value", None),
    ("hidden: choice(4, 8, 4)", 0, 26, "4 is listed twice", None),
    ("hidden: 16", 0, 13, "`hidden` needs a distribution, got `16`", None),
    ("hidden: choise(4, 8)", 0, 13, "needs a distribution", "did you mean `choice`?"),
    ("data.batch_size: int(1, 10, step=4)", 0, 22, "10 is not reached in steps of 4", "int(1, 9, step=4)"),
    ("train.seed: int(1.5, 3)", 0, 21, "must be an integer", None),
    ("train.scheduler.gamma: uniform(0.1, 0.9)", 0, 5, "`train.scheduler` is not set",
     "e.g. train.scheduler=StepLR(step_size=2)"),
    ("model.layers: choice(1, 2)", 0, 5, "cannot be set", None),
    ("metric: val_f1\n    hidden: choice(4, 8)", 0, 13, "do not report `val_f1`",
     "add `f1` to the train section's metrics"),
    ("metric: test_accuracy\n    hidden: choice(4, 8)", 0, 13, "do not report `test_accuracy`", "tuning on it"),
    ("metric: val_acuracy\n    hidden: choice(4, 8)", 0, 13, "do not report `val_acuracy`",
     "did you mean `val_accuracy`?"),
    ("sampler: grid\n    train.optimizer.lr: loguniform(1e-4, 1e-1)", 1, 25, "grid sampler cannot enumerate", None),
    ("sampler: grid\n    trials: 5\n    hidden: choice(4, 8)", 1, 13, "more than the grid's 2 points", "trials: 2"),
    ("hidden: choice(4, 8)\n    hidden: choice(2, 4)", 1, 5, "duplicate key `hidden`", None),
    ("trials: 0\n    hidden: choice(4, 8)", 0, 13, "`trials` must be at least 1", None),
])
def test_bad_search_entries_are_errors_at_their_position(search, line, col, message, hint):
    found = errors("    " + search)
    d = found[0]
    assert message in d.message, d.render()
    assert (d.span.line, d.span.column) == (SEARCH_LINE + line, col), d.render()
    if hint:
        assert d.help and hint in d.help, d.render()


def test_a_value_that_breaks_a_shape_is_an_error_at_the_value_with_a_note_at_the_layer():
    d = errors("    hidden: choice(4, 7, 16)")[0]
    assert (d.span.line, d.span.column) == (SEARCH_LINE, 23)  # the 7
    assert d.message.startswith("with hidden = 7: Reshape")
    assert d.notes and d.notes[0].span.line == 6  # the Reshape line
    text = d.render()
    assert "hidden: choice(4, 7, 16)" in text and "^" in text


def test_range_ends_are_compiled_against_the_settings_domains():
    d = errors("    train.optimizer.momentum: uniform(-1, 0.5)")[0]
    assert (d.span.line, d.span.column) == (SEARCH_LINE, 39)  # the -1
    assert "`momentum` of SGD must be at least 0" in d.message
    d = errors("    train.seed: uniform(1, 2)")[0]  # the middle of the range is not an integer
    assert "must be an integer" in d.message


def test_an_argument_under_a_searched_call_is_compiled_under_each_choice():
    d = errors("    train.optimizer: choice(SGD(lr=0.1), Adam(lr=1e-3))\n    train.optimizer.momentum: uniform(0, 0.9)")[0]
    assert "Adam has no argument `momentum`" in d.message or "momentum" in d.message
    ok = check("    train.optimizer: choice(SGD(lr=0.1), Adam(lr=1e-3))\n    train.optimizer.lr: loguniform(1e-4, 0.5)")
    assert len(ok.search.params) == 2


def test_a_key_that_changes_nothing_is_a_warning():
    c = check("    hidden: choice(4, 8)", "let unused = 3\n" + BASE.replace("hidden: choice", "x"))
    assert c.search is not None
    c = check("    unused: choice(1, 2)", "let unused = 3\n" + BASE)
    assert [w.message for w in c.warnings if "unused" in w.message][0].startswith("every value of `unused`")


def test_grid_points_are_compiled_together():
    base = BASE.replace("Reshape([2, hidden // 2])", "Reshape([k, hidden // k])")
    d = errors("    sampler: grid\n    hidden: choice(4, 6)\n    k: choice(2, 4)", "let k = 2\n" + base)[0]
    assert "the combination hidden = 6, k = 4 does not compile" in d.message


def test_search_files_through_the_cli(tmp_path):
    spec = tmp_path / "s.net"
    spec.write_text(BASE + "search {\n    hiden: choice(4, 8)\n}\n")
    r = subprocess.run([*netspec_cmd(), "check", str(spec)], capture_output=True, text=True)
    assert r.returncode == 1 and f"s.net:{SEARCH_LINE}:5: error: unknown search key `hiden`" in r.stderr
    assert "Traceback" not in r.stderr
    spec.write_text(BASE)
    r = subprocess.run([*netspec_cmd(), "tune", str(spec)], capture_output=True, text=True)
    assert r.returncode == 1 and "no `search` section" in r.stderr and "Traceback" not in r.stderr
    spec.write_text(BASE + "search {\n    hidden: choice(4, 8)\n}\n")
    r = subprocess.run([*netspec_cmd(), "tune", str(spec), "--trials", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--trials" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_dotted_names_are_search_keys_only():
    with pytest.raises(NetspecError) as e:
        netspec.check(netspec.parse("model m {\n    input: [2]\n    a.b: Linear(2)\n}\n", "d.net"))
    assert "`a.b` cannot be a layer name" in str(e.value) and "a_b" in str(e.value)
    with pytest.raises(NetspecError, match="unknown key `optimizer.lr` in train"):
        netspec.check(netspec.parse("model m {\n    input: [2]\n    Linear(2)\n}\ntrain {\n    optimizer.lr: 1\n}\n"))


def test_check_stays_without_optuna_and_torch(tmp_path):
    spec = tmp_path / "s.net"
    spec.write_text(BASE + "search {\n    hidden: choice(4, 8)\n    train.optimizer.lr: loguniform(1e-4, 0.1)\n}\n")
    code = ("import sys, netspec, netspec.cli; netspec.load(sys.argv[1]); "
            "assert 'optuna' not in sys.modules and 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- --set reaches every path diff prints

SPEC_A = """let hidden = 8
model a {
    input: [4]
    init: normal(std=0.1)
    Flatten
    fc: Linear(hidden)
    ReLU
    Linear(3)
}
data {
    train: csv("iris.csv", target="species")
    test: csv("iris.csv", target="species")
    validation: 0.2
    normalize: standard
    batch_size: 16
    labels: ["a", "b", "c"]
    subset: 100
}
train {
    loss: CrossEntropyLoss
    optimizer: SGD(lr=1e-3)
    scheduler: StepLR(2)
    epochs: 3
    metrics: [accuracy]
    early_stopping: EarlyStopping(patience=2)
    seed: 1
}
export {
    onnx: "a.onnx"
}
"""
SPEC_B = """let hidden = 16
model b {
    input: [4]
    init: normal(std=0.2)
    fc: Linear(hidden)
    ReLU
    Linear(3)
}
data {
    train: csv("other.csv", target="kind", features=["x1", "x2"])
    test: csv("iris2.csv", target="species")
    validation: 0.3
    normalize: minmax
    batch_size: 32
    shuffle: false
    stratify: true
    one_hot: true
    labels: ["x", "y", "z"]
    subset: 50
    target_type: class
    skip_bad: true
    augment: [RandomHorizontalFlip(p=0.3)]
}
train {
    loss: CrossEntropyLoss(label_smoothing=0.1)
    optimizer: SGD(lr=3e-3, momentum=0.9, nesterov=true)
    scheduler: StepLR(3, gamma=0.5)
    epochs: 5
    metrics: [accuracy, f1]
    early_stopping: EarlyStopping(patience=4, monitor="val_accuracy")
    l1: 0.001
    clip_grad_norm: 1.0
    seed: 2
    device: "cpu"
    precision: bf16
    compile: true
    sync_batchnorm: false
    checkpoint_every: 2
    save: last
    log: [csv, tensorboard]
    log_every: 10
}
export {
    onnx: "b.onnx"
    opset: 17
    tolerance: 0.001
}
"""
# whole values: another call, a section that is absent on one side, another source, the input
SPEC_C = SPEC_A.replace("    input: [4]\n", "    input: [2, 2]\n") \
    .replace("optimizer: SGD(lr=1e-3)", "optimizer: Adam(lr=2e-3)") \
    .replace("loss: CrossEntropyLoss", "loss: NLLLoss").replace("    Linear(3)\n", "    Linear(3)\n    LogSoftmax\n") \
    .replace("    scheduler: StepLR(2)\n", "").replace("    early_stopping: EarlyStopping(patience=2)\n", "") \
    .replace('train: csv("iris.csv", target="species")', "train: table(x=[[1, 2, 3, 4]], y=[0])") \
    .replace('    test: csv("iris.csv", target="species")\n', "") \
    .replace("init: normal(std=0.1)", "init: xavier_uniform")
SPEC_D = SPEC_C.replace("table(x=[[1, 2, 3, 4]], y=[0])", "table(x=[[1, 2, 3, 5]], y=[1])") \
    .replace("    optimizer: Adam(lr=2e-3)\n", "    scheduler: ExponentialLR(0.9)\n")


SPEC_E = SPEC_C.replace("    validation: 0.2\n", "    split: [0.6, 0.2, 0.2]\n")


@pytest.mark.parametrize("a, b", [(SPEC_A, SPEC_B), (SPEC_B, SPEC_A), (SPEC_A, SPEC_C), (SPEC_C, SPEC_A),
                                  (SPEC_C, SPEC_D), (SPEC_D, SPEC_C), (SPEC_C, SPEC_E), (SPEC_E, SPEC_C)],
                         ids=["a-b", "b-a", "a-c", "c-a", "c-d", "d-c", "c-e", "e-c"])
def test_every_path_diff_prints_can_be_set(tmp_path, a, b):
    """Each setting `netspec diff A B` lists is accepted by `--set PATH=<B's value>`, and A with
    all of them set is B, setting for setting (the oracle: diff itself, before and after)."""
    pa, pb = tmp_path / "a.net", tmp_path / "b.net"
    pa.write_text(a)
    pb.write_text(b)
    ca, cb = netspec.load(str(pa)), netspec.load(str(pb))
    changes = [c for c in compare_settings(ca, cb) if c.key != "data"]  # `data`: a whole section on one side only
    assert len(changes) >= 2
    spec = netspec.parse(a, str(pa))
    for c in changes:
        spec = netspec.apply_overrides(spec, [f"{c.key}={c.b if c.b is not None else 'none'}"])
    left = [x for x in compare_settings(netspec.check(spec), cb) if x.key != "data"]
    assert left == [], left


def test_every_field_diff_compares_has_a_settable_path():
    """diff prints `data.F`, `train.F`, `export.F` for every field of the configs, and goes
    into the arguments of the calls they hold: each field is a section key, each call-valued
    field has its catalogue table (a field added to a config without them fails here)."""
    from dataclasses import fields

    from netspec import catalogue as cat
    from netspec import ir
    from netspec.checker.overrides import CALL_TABLES

    for section, config in (("data", ir.DataConfig), ("train", ir.TrainConfig), ("export", ir.ExportConfig)):
        keys = {s.key for s in cat.SECTIONS[section]}
        for f in fields(config):
            if f.name.endswith("span"):
                continue
            assert f.name in keys, f"{section}.{f.name}"
            kind = str(f.type)
            if "CallValue |" in kind or kind.startswith("CallValue") or kind.startswith("Source"):
                assert (section, f.name) in CALL_TABLES, f"{section}.{f.name}"


def test_resume_and_diff_paths_that_users_copy():
    """The paths the issue names: `--set train.optimizer.lr=3e-3` was refused."""
    spec = netspec.parse(SPEC_A, "a.net")
    c = netspec.check(netspec.apply_overrides(spec, ["train.optimizer.lr=3e-3", "train.scheduler.step_size=4",
                                                     "train.scheduler.gamma=0.5", "train.loss.label_smoothing=0.2",
                                                     "train.early_stopping.min_delta=0.01", "let hidden=12",
                                                     "model.name=renamed", 'data.train.target="kind"']))
    assert dict(c.train.optimizer.kwargs)["lr"] == 3e-3
    assert dict(c.train.scheduler.kwargs) == {"step_size": 4, "gamma": 0.5}  # the positional 2 replaced, not doubled
    assert dict(c.train.loss.kwargs) == {"label_smoothing": 0.2}
    assert c.train.early_stopping.get("min_delta") == 0.01
    assert c.constants == (("hidden", 12),) and c.model.name == "renamed"
    assert c.data.train.get("target") == ("kind",)
    # a spec without an optimizer: the default SGD(lr=0.01) gets the new lr
    bare = netspec.parse("model m {\n    input: [2]\n    Linear(1)\n}\n", "m.net")
    assert dict(netspec.check(netspec.apply_overrides(bare, ["train.optimizer.lr=0.5"])).train.optimizer.kwargs) \
        == {"lr": 0.5}


@pytest.mark.parametrize("override, message, hint", [
    ("train.optimizer.momentun=0.9", "SGD has no argument `momentun`", "did you mean `momentum`?"),
    ("train.scheduler.gamma=0.5", "`train.scheduler` is not set", "train.scheduler=StepLR(step_size=2)"),
    ("train.metrics.k=3", "`train.metrics` does not hold a call with arguments", None),
    ("model.fc=3", "only model.input, model.init and model.name can", None),
    ("model.name=\"a b\"", "a model name is a name", None),
    ("hiden=3", "there is no `let hiden`", "did you mean `hidden`?"),
    ("trian.epochs=3", "unknown section `trian`", "did you mean `train`?"),
    ("train.optimizer.lr.x=3", "has no arguments to set", None),
])
def test_paths_that_name_nothing_are_refused(override, message, hint):
    spec = netspec.parse(SPEC_A.replace("    scheduler: StepLR(2)\n", ""), "a.net")
    with pytest.raises(NetspecError) as e:
        netspec.apply_overrides(spec, [override])
    d = e.value.diagnostics[0]
    assert message in d.message, d.message
    assert d.message.startswith("--set ")
    if hint:
        assert hint in (d.help or ""), d.help
