"""Starting from trained weights: `weights { from; rename; skip; allow_unused }`, `freeze`,
`unfreeze`, `param_groups`. The oracle is torch itself: the file's tensors, a hand-built
optimizer's groups, the weights of an uninterrupted run.

A small base model (a table, BatchNorm inside) is trained once per session; each test starts
a tuned model from its run folder.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.train.trainer import Trainer, train_file
from tests.conftest import EXAMPLES, ROOT, have_dataset, netspec_cmd

BASE = """
model base {
    input: [6]
    body: { fc1: Linear(16); bn: BatchNorm1d; ReLU; fc2: Linear(16); ReLU }
    head: Linear(3)
}
data {
    train: table(x=normal(0, 1, [240, 6]), y=randint(0, 3, 240))
    validation: 0.25
    batch_size: 16
}
train { loss: CrossEntropyLoss; optimizer: Adam(lr=1e-2); epochs: 1; metrics: [accuracy] }
"""

TUNED = """
model tuned {{
    input: [6]
    body: {{ fc1: Linear(16); bn: BatchNorm1d; ReLU; fc2: Linear(16); ReLU }}
    head: Linear({classes})
}}
weights {{
    from: "{base}"
    skip: [head]
    {weights_extra}
}}
data {{
    train: table(x=normal(0, 1, [240, 6]), y=randint(0, {classes}, 240))
    validation: 0.25
    batch_size: 16
}}
train {{
    loss: CrossEntropyLoss
    optimizer: SGD(lr=0.05, momentum=0.9, weight_decay=1e-3)
    scheduler: StepLR(step_size=1, gamma=0.5)
    epochs: 4
    metrics: [accuracy]
    freeze: [body]
    unfreeze: {{ body.fc2: 3 }}
    param_groups: {{ body.fc2: {{lr: 0.01}} }}
    {train_extra}
}}
"""


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    spec = folder / "base.net"
    spec.write_text(BASE)
    train_file(str(spec), out_dir=str(folder / "run"), quiet=True)
    return folder / "run"


def tuned_spec(tmp_path: Path, base: Path | str, classes: int = 4, weights_extra: str = "", train_extra: str = "",
               name: str = "tuned.net") -> Path:
    spec = tmp_path / name
    spec.write_text(TUNED.format(base=base, classes=classes, weights_extra=weights_extra, train_extra=train_extra))
    return spec


def state(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, weights_only=True)
    return obj["model"] if "model" in obj and "format" in obj else obj


def same(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


FROZEN = ["body.fc1.weight", "body.fc1.bias", "body.bn.weight", "body.bn.bias", "body.bn.running_mean",
          "body.bn.running_var", "body.bn.num_batches_tracked"]
STAGED = ["body.fc2.weight", "body.fc2.bias"]


# ---------------------------------------------------------------- the language


def test_maps_and_layer_paths_parse_format_and_round_trip(tmp_path):
    from netspec.syntax.format import format_text, unparse

    text = TUNED.format(base="runs/base", classes=4, weights_extra='rename: { "body.": "body.", a: "b" }',
                        train_extra="")
    spec = netspec.parse(text, "t.net")
    train = next(i for i in spec.items if isinstance(i, netspec.ir.Section) and i.kind == "train")
    unfreeze = next(e for e in train.entries if e.key == "unfreeze").value
    assert isinstance(unfreeze, netspec.ir.MapLit) and unfreeze.items[0].key == "body.fc2"
    once = format_text(text, "t.net")
    assert format_text(once, "t.net") == once and netspec.parse(once, "t.net") == spec
    assert netspec.parse(unparse(spec), "t.net") == spec  # the run folder's spec.net
    with pytest.raises(NetspecError, match=r"`a\.b` cannot be a layer name"):
        netspec.check(netspec.parse("model m {\n input: [3]\n a.b: Linear(3)\n}\n", "m.net"))


def test_state_shapes_from_the_catalogue_equal_torch():
    """The checker's view of a model's state_dict (no torch) is torch's, for every catalogue layer."""
    from netspec import catalogue as cat
    from netspec.builder import build_layer
    from netspec.ir import state_shapes

    for row in cat.LAYERS_LIST:
        for shape, text in row.examples:
            spec = netspec.parse(f"model m {{\n input: {shape}\n layer: {text}\n}}\n", "e.net")
            checked = netspec.check(spec)
            node = checked.model.root.children[0]
            ours = {k: s for k, (s, _) in state_shapes(checked.model.root).items()}
            torch_ = {f"layer.{k}": tuple(v.shape) for k, v in build_layer(node).state_dict().items()}
            assert ours == torch_, text


# ---------------------------------------------------------------- loading: strict, listed, never silent


def test_mismatches_are_listed_by_name_with_both_shapes(base_run, tmp_path):
    spec = tmp_path / "wide.net"
    spec.write_text(TUNED.format(base=base_run, classes=4, weights_extra="", train_extra="")
                    .replace("skip: [head]", "").replace("fc2: Linear(16); ReLU }", "fc2: Linear(8); ReLU; fc3: Linear(4) }"))
    with pytest.raises(NetspecError) as e:
        netspec.load(str(spec), read_data=True)
    text = e.value.render()
    assert "do not fit model `tuned`" in text and "wide.net:" in text
    for line in ("different shape: body.fc2.weight: [16, 16] in the file, [8, 16] in the model",
                 "different shape: head.weight: [3, 16] in the file, [4, 4] in the model",
                 "missing from the file: body.fc3.weight [4, 8]"):
        assert line in text, text
    assert "help: `skip: [body.fc2, head]`" in text


def test_unused_tensors_need_allow_unused_and_are_reported(base_run, tmp_path, capsys):
    text = TUNED.format(base=base_run, classes=4, weights_extra="", train_extra="").replace(
        "fc2: Linear(16); ReLU }", "ReLU }").replace("freeze: [body]", "freeze: [body.fc1]").replace(
        "unfreeze: { body.fc2: 3 }", "").replace("param_groups: { body.fc2: {lr: 0.01} }", "")
    spec = tmp_path / "small.net"
    spec.write_text(text)
    with pytest.raises(NetspecError, match=r"not used by the model: body\.fc2\.weight \[16, 16\]"):
        netspec.load(str(spec), read_data=True)
    spec.write_text(text.replace("skip: [head]", "skip: [head]\n    allow_unused: true"))
    train_file(str(spec), ("train.epochs=1",), out_dir=str(tmp_path / "run"), quiet=True)
    out = capsys.readouterr().out
    assert "weights: 7 of 9 tensors loaded" in out
    assert "in the file, not used (allow_unused): body.fc2.weight, body.fc2.bias" in out


def _write_bad(kind: str, folder: Path, base_run: Path) -> Path:
    good = state(base_run / "model.pt")
    if kind == "not_a_state_dict":
        path = folder / "list.pt"
        torch.save([1, 2, 3], path)
    elif kind == "pickle_that_runs_code":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {folder / 'PWNED'}",))

        path = folder / "evil.pt"
        torch.save({"body.fc1.weight": good["body.fc1.weight"], "x": Evil()}, path)
    elif kind == "truncated":
        path = folder / "cut.pt"
        data = (base_run / "model.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # a safetensors header whose offsets claim more bytes than the file has
        from safetensors.torch import save_file

        path = folder / "lying.safetensors"
        save_file({k: v.contiguous() for k, v in good.items()}, str(path))
        raw = bytearray(path.read_bytes())
        (n,) = struct.unpack("<Q", raw[:8])
        header = raw[8:8 + n].decode()
        end = max(int(x) for x in __import__("re").findall(r'"data_offsets":\[\d+,(\d+)\]', header))
        lie = header.replace(f",{end}]", f",{end + 64}]", 1)
        path.write_bytes(struct.pack("<Q", len(lie)) + lie.encode() + raw[8 + n:])
    return path


BAD_FILES = {
    "not_a_state_dict": "not a state_dict (names -> tensors); it holds a list",
    "pickle_that_runs_code": "it holds a pickled `posix.system`, which is not weights",
    "truncated": "a damaged or truncated PyTorch (zip) file",
    "lying_safetensors": "its safetensors header lies",
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_weight_files_are_clear_errors_and_nothing_is_lost(kind, base_run, tmp_path):
    path = _write_bad(kind, tmp_path, base_run)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = tuned_spec(tmp_path, path)
    r = CliRunner().invoke(main, ["check", str(spec)])
    assert r.exit_code == 1 and BAD_FILES[kind] in r.output, r.output
    line = spec.read_text().splitlines().index(f'    from: "{path}"') + 1
    assert "Traceback" not in r.output and f"{spec}:{line}:11" in r.output  # at `from:`
    r = CliRunner().invoke(main, ["train", str(spec), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and BAD_FILES[kind] in r.output
    # summary and diagram mark layers "pretrained": they read the file's header as check does
    for args in (["summary", str(spec)], ["diagram", str(spec), "-o", str(tmp_path / "d.svg")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1 and BAD_FILES[kind] in r.output and "pretrained" not in r.output, (args, r.output)
    assert not (tmp_path / "d.svg").exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "PWNED").exists()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_check_without_data_still_reads_the_weights_header(base_run, tmp_path):
    """`check --no-data` said ok for a spec whose weights file does not exist (a weights file
    is not data: its header is read in milliseconds)."""
    spec = tuned_spec(tmp_path, tmp_path / "nope" / "model.pt")
    r = CliRunner().invoke(main, ["check", "--no-data", str(spec)])
    assert r.exit_code == 1 and "no such file or folder" in r.output and "ok:" not in r.output, r.output
    r = CliRunner().invoke(main, ["check", "--no-data", str(tuned_spec(tmp_path, base_run))])
    assert r.exit_code == 0 and "ok:" in r.output, r.output


def test_warnings_for_frozen_layers_that_stay_random_and_renamed_names_shown(base_run, tmp_path):
    """Found by a newcomer: `--set weights.from=none` kept the freeze silently (frozen random
    layers); a skipped and frozen layer that unfreezes later was said to stay random for good;
    keys a rename left unused were shown by their old names only."""
    spec = tuned_spec(tmp_path, base_run)
    warned = [w.message for w in netspec.load(str(spec), ("weights.from=none",)).warnings]
    assert any("`body` is frozen, but `weights` loads nothing (`from: none`)" in m for m in warned), warned
    later = tuned_spec(tmp_path, base_run, weights_extra="", name="later.net")
    later.write_text(later.read_text().replace("skip: [head]", "skip: [head, body.fc2]"))
    warned = [w.message for w in netspec.load(str(later)).warnings]
    assert any("`body.fc2` is skipped (left at its initialisation) and frozen: it stays random until epoch 3" in m
               for m in warned), warned
    prefixed = tuned_spec(tmp_path, base_run, weights_extra='rename: { "": "x." }', name="prefixed.net")
    with pytest.raises(NetspecError) as e:
        netspec.load(str(prefixed), read_data=True)
    assert "not used by the model: body.fc1.weight (renamed x.body.fc1.weight)" in e.value.render()


SPEC_ERRORS = {  # replacements in the tuned spec -> the message
    "rename_two_onto_one": ({"skip: [head]": 'skip: [head]\n    rename: { "body.fc1.": "body.fc2.", "body.fc2.": '
                                             '"body.fc2." }'},
                            "renamed onto one name: body.fc1.weight and body.fc2.weight both become body.fc2.weight"),
    "skip_without_parameters": ({"skip: [head]": "skip: [head, body.relu1]"},
                                "skip: `body.relu1` has no parameters or buffers"),
    "freeze_everything": ({"freeze: [body]": "freeze: [body, head]"}, "freeze covers every parameter of model `tuned`"),
    "unfreeze_beyond_the_run": ({"body.fc2: 3 }": "body.fc2: 9 }"},
                                "`body.fc2` would train from epoch 9, but the run has 4 epochs"),
    "param_groups_overlap": ({"{ body.fc2: {lr: 0.01} }": "{ body: {lr: 0.1}, body.fc1: {lr: 0.1}, body.bn: {lr: 0.1}, "
                                                         "body.fc2: {lr: 0.01} }"},
                             "every parameter of `body` belongs to the more specific"),
    "param_groups_twice": ({"{ body.fc2: {lr: 0.01} }": '{ body.fc2: {lr: 0.01}, "body.fc2": {lr: 0.1} }'},
                           "`body.fc2` is given twice, so which settings apply is ambiguous"),
    "unknown_path": ({"freeze: [body]": "freeze: [bodyy]"}, "did you mean `body`?"),
    "unknown_zoo_model": ({'from: "BASE"': 'from: torchvision("resnet34")'},
                          "netspec has no published weights for `resnet34`"),
}


@pytest.mark.parametrize("case", sorted(SPEC_ERRORS))
def test_bad_specs_are_errors_at_their_position(case, base_run, tmp_path):
    replacements, message = SPEC_ERRORS[case]
    text = TUNED.format(base="BASE", classes=4, weights_extra="", train_extra="")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    spec = tmp_path / "bad.net"
    spec.write_text(text.replace("BASE", str(base_run)))
    r = CliRunner().invoke(main, ["check", str(spec)])
    assert r.exit_code == 1, r.output
    assert message in r.output and f"{spec}:" in r.output and "Traceback" not in r.output, r.output


def test_header_reading_equals_torch_and_safetensors_loads_with_a_report(base_run, tmp_path, capsys):
    from safetensors.torch import save_file

    from netspec.weights.files import read_header

    sd = state(base_run / "model.pt")
    paths = {"zip": base_run / "model.pt", "checkpoint": base_run / "checkpoint.pt", "legacy": tmp_path / "l.pt",
             "safetensors": tmp_path / "w.safetensors"}
    torch.save(sd, paths["legacy"], _use_new_zipfile_serialization=False)
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()},
              str(paths["safetensors"]))
    for kind, path in paths.items():
        info = read_header(path).tensors
        assert set(info) == set(sd), kind
        assert all(info[k].shape == tuple(sd[k].shape) for k in sd), kind
    assert read_header(base_run).path == base_run / "model.pt"  # a run folder means its model.pt
    spec = tuned_spec(tmp_path, paths["safetensors"])
    out = tmp_path / "run"
    train_file(str(spec), out_dir=str(out), quiet=True)
    assert "converted to the model's float32: 8 tensors of float16" in capsys.readouterr().out
    tuned = state(out / "checkpoint.pt")
    assert all(torch.equal(tuned[k], sd[k].half().float()) for k in FROZEN if sd[k].is_floating_point())


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_safetensors_whose_header_length_starts_with_the_pickle_byte_is_read(dtype, tmp_path):
    """A safetensors file starts with its header length (8 bytes, little-endian): one whose
    length ends in 0x80 (1 file in 32) was taken for a legacy pickle and refused as damaged."""
    from safetensors.torch import load_file, save_file

    from netspec.weights.files import read_header

    sd = {"fc.weight": torch.arange(12).reshape(3, 4).to(dtype), "fc.bias": torch.arange(3).to(dtype)}
    for pad in range(300):  # find metadata that makes the header length end in 0x80
        path = tmp_path / f"w{pad}.safetensors"
        save_file(sd, str(path), metadata={"note": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no header length ending in 0x80")
    assert set(load_file(str(path))) == set(sd)  # a valid file, as safetensors reads it
    info = read_header(path)
    assert info.format == "safetensors" and {k: v.shape for k, v in info.tensors.items()} == \
        {"fc.weight": (3, 4), "fc.bias": (3,)}


# ---------------------------------------------------------------- freezing, groups, stages


def test_frozen_tensors_stay_bit_identical_and_stages_join_the_optimizer(base_run, tmp_path):
    """The optimizer holds exactly the trainable parameters (by identity), gains body.fc2 at
    epoch 3 with its own lr under the schedule's factor; frozen BatchNorm stays in eval mode."""
    from netspec.train.runs import RunDir

    checked = netspec.load(str(tuned_spec(tmp_path, base_run)), read_data=True)
    trainer = Trainer(checked, RunDir(tmp_path / "t", enabled=False), quiet=True)
    model = trainer.model

    def held() -> set[int]:
        return {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}

    assert held() == {id(p) for p in model.head.parameters()} == {id(p) for p in model.parameters() if p.requires_grad}
    assert trainer.loop.frozen_norms == [model.body.bn]
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.05]
    modes: list[bool] = []
    model.body.bn.register_forward_pre_hook(lambda m, x: modes.append(m.training))
    result = trainer.fit()
    assert modes and not any(modes)  # frozen BatchNorm: eval mode in every training step
    assert result["epochs"] == 4
    assert held() == {id(p) for p in [*model.head.parameters(), *model.body.fc2.parameters()]}
    # StepLR(gamma 0.5) stepped 4 times; body.fc2 joined at epoch 3 with 0.01 x 0.5^2, then stepped twice
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.05 * 0.5 ** 4, 0.01 * 0.5 ** 4])
    loaded, now = state(base_run / "model.pt"), model.state_dict()
    assert same(loaded, now, FROZEN)
    assert not same(loaded, now, STAGED)


class Interrupted(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [2, 3])
def test_resume_mid_staged_unfreeze_continues_exactly(stop_after, base_run, tmp_path, monkeypatch):
    spec = tuned_spec(tmp_path, base_run)
    train_file(str(spec), out_dir=str(tmp_path / "full"), quiet=True)
    original = Trainer.end_of_epoch

    def end_of_epoch(self, row, stop):
        original(self, row, stop)
        if row["epoch"] == stop_after:
            raise Interrupted

    monkeypatch.setattr(Trainer, "end_of_epoch", end_of_epoch)
    with pytest.raises(Interrupted):
        train_file(str(spec), out_dir=str(tmp_path / "cut"), quiet=True)
    early = state(tmp_path / "cut" / "checkpoint.pt")
    assert same(early, state(base_run / "model.pt"), FROZEN + (STAGED if stop_after == 2 else []))
    monkeypatch.setattr(Trainer, "end_of_epoch", original)
    train_file(str(spec), out_dir=str(tmp_path / "cut"), resume=True, quiet=True)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert same(a["model"], b["model"], a["model"])
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    assert a["history"][-1]["val_loss"] == b["history"][-1]["val_loss"]


def test_resume_with_a_new_learning_rate_keeps_each_groups_own(base_run, tmp_path):
    spec = tuned_spec(tmp_path, base_run)
    spec.write_text(spec.read_text().replace("epochs: 4", "epochs: 2").replace("body.fc2: 3", "body.fc2: 2"))
    out = tmp_path / "run"
    train_file(str(spec), out_dir=str(out), quiet=True)
    train_file(str(spec), ("train.epochs=3", "train.optimizer=SGD(lr=0.02, momentum=0.9, weight_decay=1e-3)"),
               out_dir=str(out), resume=True, quiet=True)
    groups = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"]
    # reset to each group's own base lr (the optimizer's new one; body.fc2's 0.01), then one StepLR step
    assert [g["lr"] for g in groups] == pytest.approx([0.02 * 0.5, 0.01 * 0.5])


@pytest.mark.slow
def test_two_processes_equal_one(base_run, tmp_path):
    spec = tuned_spec(tmp_path, base_run)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for out, extra in (("one", []), ("two", ["--nproc", "2"])):
        r = subprocess.run([*netspec_cmd(), "train", str(spec), "--quiet", "--out", out, *extra], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    one, two = state(tmp_path / "one" / "checkpoint.pt"), state(tmp_path / "two" / "checkpoint.pt")
    assert same(one, two, FROZEN)  # frozen: bit-identical, BatchNorm statistics included
    assert max(float((one[k].double() - two[k].double()).abs().max()) for k in one) < 1e-5


@pytest.mark.slow
def test_eject_loads_freezes_and_groups_the_same(base_run, tmp_path):
    from tests.test_eject import eject_and_compare

    program = eject_and_compare(tuned_spec(tmp_path, base_run), (), tmp_path)
    text = program.read_text()
    assert f'WEIGHTS = "{base_run / "model.pt"}"' in text and "def load_pretrained(" in text
    assert "def start_epoch(" in text and "trainable_groups(model, PLAN, 1)" in text
    # fewer epochs than the staged unfreeze needs: refused as netspec train refuses it
    r = subprocess.run([sys.executable, str(program), "--epochs", "2", "--out", str(tmp_path / "short")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and "body.fc2 would train from epoch 3, but the run has 2 epochs" in r.stderr, r.stderr
    assert r.stdout.startswith(f"weights: 9 of 11 tensors loaded from {base_run / 'model.pt'}"), r.stdout


@pytest.mark.slow
def test_export_and_predict_the_fine_tuned_model(base_run, tmp_path):
    import numpy as np

    spec = tuned_spec(tmp_path, base_run)
    out = tmp_path / "run"
    train_file(str(spec), out_dir=str(out), quiet=True)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32))
    r = subprocess.run([*netspec_cmd(), "export", str(out), "-o", str(tmp_path / "m.onnx")], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*netspec_cmd(), "predict", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "--json"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(__import__("json").loads(r.stdout)) == 5
    r = CliRunner().invoke(main, ["eval", str(out)])
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- summary, diagram, the zoo's files


def test_summary_and_diagram_mark_pretrained_and_frozen_layers(base_run, tmp_path):
    import xml.etree.ElementTree as ET

    from netspec.tools.diagram import write_diagram
    from netspec.tools.summary import summary_text

    checked = netspec.load(str(tuned_spec(tmp_path, base_run)))
    text = summary_text(checked)
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert rows["fc1"].split()[-2:] == ["no", "pretrained"]
    assert rows["fc2"].split()[-4:] == ["from", "epoch", "3", "pretrained"]
    assert rows["head"].split()[-2:] == ["yes", "new"]
    assert "Trainable params: 68" in text and "Non-trainable params: 416 (frozen; 272 of them" in text
    write_diagram(checked, str(tmp_path / "t.svg"))
    shown = " ".join(t.text or "" for t in ET.parse(tmp_path / "t.svg").getroot().iter("{http://www.w3.org/2000/svg}text"))
    assert "pretrained  ·  frozen  ·  112 params" in shown and "new  ·  68 params" in shown
    assert "frozen until epoch 3" in shown


def test_zoo_files_offline_download_and_local_copy(tmp_path, monkeypatch):
    from netspec.weights import zoo

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    row = zoo.ZOO["resnet18"]
    with pytest.raises(NetspecError) as e:
        zoo.cached_file(row)
    text = e.value.render()
    assert "NETSPEC_OFFLINE=1" in text and row.url in text and str(tmp_path / "cache" / "netspec" / "weights" /
                                                                   "resnet18-f37072fd.pth") in text
    spec = tmp_path / "r18.net"
    spec.write_text((ROOT / "examples" / "zoo" / "resnet18.net").read_text() + 'weights { from: torchvision("resnet18") }\n')
    with pytest.raises(NetspecError, match=r"put it at .*resnet18-f37072fd\.pth") as e:  # check says so, offline
        netspec.load(str(spec), read_data=True)
    assert e.value.diagnostics[0].span.line == len(spec.read_text().splitlines())
    monkeypatch.setenv("NETSPEC_OFFLINE", "0")  # online: judged by the zoo spec's tensors until downloaded
    assert netspec.load(str(spec), read_data=True).weights.source.zoo == "resnet18"
    # a download (file:// stands in for the network) is checked against the SHA-256, atomically
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"weights" * 1000)
    good = hashlib.sha256(blob.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "w.pth"
    with pytest.raises(NetspecError, match="not the published"):
        zoo.download(blob.as_uri(), target, "0" * 64)
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))
    zoo.download(blob.as_uri(), target, good)
    assert target.read_bytes() == blob.read_bytes()


def test_check_reads_only_the_header(base_run, tmp_path):
    """A large file is judged by its header: check opens the zip directory and data.pkl only."""
    from netspec.weights import files

    sd = {f"layer{i}.weight": torch.zeros(256, 1024) for i in range(25)}  # 26 MB
    path = tmp_path / "big.pt"
    torch.save(sd, path)
    reads = []
    real = files.zipfile.ZipFile.read

    def counting(self, name, *a, **k):
        reads.append(name)
        return real(self, name, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files.zipfile.ZipFile, "read", counting)
        info = files.read_header(path)
    assert len(info.tensors) == 25 and [r.rsplit("/", 1)[-1] for r in reads] == ["data.pkl"]


def test_pickle_allow_list_refuses_before_running(tmp_path):
    from netspec.weights.files import read_header

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(NetspecError, match="not a PyTorch file|which is not weights"):
        read_header(path)
    assert not marker.exists()


def test_cli_train_prints_the_load_report_and_the_groups(base_run, tmp_path):
    spec = tuned_spec(tmp_path, base_run)
    r = subprocess.run([*netspec_cmd(), "train", str(spec), "--out", str(tmp_path / "run")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"weights: 9 of 11 tensors loaded from {base_run / 'model.pt'}" in out
    assert "left at their initialisation (skip): head (2 tensors)" in out
    assert "frozen: body (416 parameters; body.fc2 trains from epoch 3, 144 parameters stay frozen)" in out
    assert "1. the rest (SGD, lr=0.05): 68 parameters" in out and "2. body.fc2 (lr=0.01): 272 parameters, from " \
        "epoch 3" in out
    assert "epoch 3: unfreezing body.fc2" in out
    assert sys.executable


@pytest.mark.slow
@pytest.mark.skipif(not (have_dataset("mnist") and have_dataset("fashion_mnist")), reason="MNIST/Fashion-MNIST missing")
def test_fashion_from_mnist_example_trains_from_an_mnist_run(tmp_path, capsys):
    mnist = tmp_path / "mnist_run"
    train_file(str(EXAMPLES / "mnist.net"), ("data.subset=600", "train.epochs=1"), out_dir=str(mnist), quiet=True)
    result = train_file(str(EXAMPLES / "fashion_from_mnist.net"),
                        (f'weights.from="{mnist}"', "data.subset=300", "train.epochs=3"),
                        out_dir=str(tmp_path / "fashion"), quiet=True)
    out = capsys.readouterr().out
    assert f"weights: 4 of 8 tensors loaded from {mnist / 'model.pt'}" in out and "epoch 3: unfreezing conv2" in out
    assert result["epochs"] == 3 and result["test_accuracy"] > 0.3
    loaded, tuned = state(mnist / "model.pt"), state(tmp_path / "fashion" / "checkpoint.pt")
    assert same(loaded, tuned, ["conv1.conv2d1.weight", "conv1.conv2d1.bias"])  # frozen for the whole run
    assert not same(loaded, tuned, ["conv2.conv2d1.weight"])  # unfrozen at epoch 3


def test_diff_shows_weights_and_freezing_as_written(base_run, tmp_path):
    from netspec.tools.diff import diff_paths, render_text

    a = tuned_spec(tmp_path, base_run, name="a.net")
    b = tuned_spec(tmp_path, base_run, weights_extra='rename: { "x.": "y." }', name="b.net")
    b.write_text(b.read_text().replace("body.fc2: 3", "body.fc2: 2"))
    text = render_text(diff_paths(str(a), str(b)))
    assert 'weights.rename  [] -> { "x.": "y." }' in text
    assert "train.unfreeze  { body.fc2: 3 } -> { body.fc2: 2 }" in text


SCHEDULERS = [("StepLR", {"step_size": 1, "gamma": 0.5}), ("ExponentialLR", {"gamma": 0.9}),
              ("CosineAnnealingLR", {"T_max": 10}), ("MultiStepLR", {"milestones": [1, 3]}),
              ("ReduceLROnPlateau", {"patience": 0}), ("OneCycleLR", {"max_lr": 0.1, "total_steps": 20}),
              ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3})]


@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
def test_a_group_joining_later_follows_the_schedule(name, kwargs):
    """The joining group's lr is its base lr times the factor the schedule reached (the first
    group's lr under OneCycleLR/CyclicLR), and it keeps following the schedule."""
    from torch import nn

    from netspec.train.transfer import Plan, set_trainable, start_epoch, trainable_groups

    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("a", nn.Linear(3, 3))
    model.add_module("b", nn.Linear(3, 3))
    absolute = name in ("OneCycleLR", "CyclicLR")
    plan = Plan(["b"], {"b": 3}, [] if absolute else ["b"], [] if absolute else [{"lr": 0.02}], lr=0.1)
    set_trainable(model, plan, 1)
    optimizer = torch.optim.SGD(trainable_groups(model, plan, 1), lr=0.1, momentum=0.9)
    scheduler = getattr(torch.optim.lr_scheduler, name)(optimizer, **kwargs)

    def step() -> None:
        optimizer.step()
        scheduler.step(1.0) if name == "ReduceLROnPlateau" else scheduler.step()

    step(), step()
    assert start_epoch(model, optimizer, scheduler, plan, 3, name) is not None
    assert len(optimizer.param_groups) == 2 and model.b.weight.requires_grad
    for _ in range(4):
        first, joined = optimizer.param_groups
        if absolute:
            assert joined["lr"] == pytest.approx(first["lr"])
        else:
            assert joined["lr"] / 0.02 == pytest.approx(first["lr"] / 0.1, rel=1e-6)
        step()
