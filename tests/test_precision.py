"""Mixed precision, torch.compile checked against eager gradients, and the non-finite loss
check that needs no host sync per step."""

from __future__ import annotations

import pytest
import torch

import netspec.train.trainer as train_module
from netspec.errors import NetspecError
from netspec.train.trainer import train_file

CNN = """
model c {{
    input: [1, 12, 12]
    Conv2d(8, 3, padding=1)
    BatchNorm2d
    ReLU
    MaxPool2d(2)
    Flatten
    Linear(3)
}}
data {{
    train: table(x=uniform(0, 1, [384, 1, 12, 12]), y=randint(0, 3, 384))
    validation: 0.25
    batch_size: 64
}}
train {{ loss: CrossEntropyLoss; optimizer: Adam(lr=1e-2); epochs: 2; metrics: [accuracy]; {extra} }}
"""


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_exports_fp32(tmp_path, spec_file, precision):
    path = spec_file(CNN.format(extra=f"precision: {precision}"))
    out = tmp_path / precision
    result = train_file(path, (), out_dir=str(out), quiet=True)
    assert result["val_loss"] is not None and result["val_loss"] < 5
    state = torch.load(out / "model.pt", weights_only=True)
    assert all(t.dtype in (torch.float32, torch.int64) for t in state.values())  # master weights stay fp32
    if precision == "fp16":
        assert torch.load(out / "checkpoint.pt", weights_only=True)["scaler"] is not None
    from netspec.deploy.export import export_file

    report = export_file(str(out), str(tmp_path / f"{precision}.onnx"))
    assert report["max_abs_diff"] < 1e-4


def test_compile_is_used_only_after_its_gradients_match_eager(tmp_path, spec_file):
    path = spec_file(CNN.format(extra="compile: true"))
    result = train_file(path, (), out_dir=str(tmp_path / "compiled"), quiet=True)
    eager = train_file(path, ("train.compile=false",), out_dir=str(tmp_path / "eager"), quiet=True)
    assert result["val_loss"] == pytest.approx(eager["val_loss"], rel=1e-3)


def test_compile_with_wrong_gradients_is_refused(tmp_path, spec_file, monkeypatch):
    """What inductor did on this CPU (all-zero convolution gradients): netspec refuses."""

    class ZeroGrads(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out.detach() + 0 * sum(p.sum() for p in self.inner.parameters())

    monkeypatch.setattr(torch, "compile", lambda m, **k: ZeroGrads(m))
    path = spec_file(CNN.format(extra="compile: true"))
    with pytest.raises(NetspecError, match=r"torch.compile's gradient of `conv2d1.weight` differs from eager's"):
        train_file(path, (), out_dir=str(tmp_path / "r"), quiet=True)
    assert not (tmp_path / "r").exists()  # nothing was written


def test_nonfinite_loss_found_without_a_sync_per_step(tmp_path, spec_file, monkeypatch):
    """The accelerator path: a running flag read every 50 steps still names the first bad step."""
    monkeypatch.setattr(train_module, "NONFINITE_CHECK_CPU", 50)
    path = spec_file("""
model m {
    input: [1]
    Linear(1)
}
data { train: table(x=linspace(0, 1, 200), y=x * 1e30); batch_size: 2 }
train { loss: MSELoss; optimizer: SGD(lr=1e10); epochs: 1 }
""")
    with pytest.raises(NetspecError) as e:
        train_file(path, (), out_dir=str(tmp_path / "r"), quiet=True)
    text = e.value.render()
    assert "at epoch 1, step 2 of 100" in text or "at epoch 1, step 1 of 100" in text, text
