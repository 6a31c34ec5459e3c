"""The model zoo (examples/zoo/*.net), and the netspec fixes it led to.

    PYTHONPATH=$PWD python -m pytest -q tests/test_zoo.py
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

import netspec
from netspec.build import build_model
from netspec.errors import ExportError
from netspec.export import export_model


def test_onnxruntime_failure_is_an_export_error(tmp_path, monkeypatch):
    """A graph onnxruntime cannot run is an ExportError naming the input shape (a message, not
    a traceback), and nothing is written."""
    checked = netspec.check(netspec.parse("model m {\n    input: [4]\n    Linear(2)\n}\n", "m.net"))

    def fail(self, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Reshape cannot reshape\nsecond line")

    monkeypatch.setattr(ort.InferenceSession, "run", fail)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"onnxruntime failed on an input of shape \[3, 4\]: .*Reshape cannot reshape") as e:
        export_model(checked, build_model(checked.model, 0), out)
    assert "second line" not in str(e.value)
    assert not out.exists()
