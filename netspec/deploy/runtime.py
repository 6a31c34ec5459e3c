"""The onnxruntime side of deployment (no torch import): open an exported model, read the
metadata netspec wrote into it, run it.

In: an .onnx file (written by `netspec export`). Out: an onnxruntime session on the CPU,
the metadata_props as JSON values (input shape, preprocessing, labels, task, ...), and the
model's outputs for an array of inputs. export.py (torch side: writing and verifying) and
predict.py (reading user inputs) both use it; neither imports the other.

    session, meta = load_session("mnist.onnx")
    logits = run_session(session, x)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import error

INPUT, OUTPUT = "input", "output"  # the graph's input and output names
MASK = "mask"  # models of texts: the second input, 1 at a text's tokens and 0 at padding


def open_session(path: str) -> Any:
    """An onnxruntime InferenceSession of `path` on the CPU (onnxruntime's own errors pass through)."""
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def read_metadata(session: Any) -> dict:
    """The model's metadata_props, each value decoded as JSON where it is JSON."""
    parsed: dict = {}
    for k, v in dict(session.get_modelmeta().custom_metadata_map).items():
        try:
            parsed[k] = json.loads(v)
        except ValueError:
            parsed[k] = v
    return parsed


def load_session(path: str) -> tuple[Any, dict]:
    """(session, metadata) of a netspec export; a missing or foreign file is a user-facing error."""
    from netspec.util import check_path

    check_path(path)
    p = Path(path)
    if not p.exists():
        raise error(f"{path}: no such file")
    if not p.is_file():
        raise error(f"{path}: not a regular file")
    try:
        session = open_session(path)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise error(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
    parsed = read_metadata(session)
    if "input_shape" not in parsed:
        raise error(f"{path}: has no netspec metadata (input_shape)", "export it with `netspec export`")
    return session, parsed


def feeds(session: Any, x: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The graph's inputs for the batch of raw samples `x`, by the names the file declares
    (int8 calibration feeds the fp32 graph through this too); a model of texts also takes
    `mask`, by default 1 wherever an id is not padding."""
    inputs = session.get_inputs()
    feed = {inputs[0].name: x}
    if len(inputs) > 1:
        feed[inputs[1].name] = (x != 0).astype(np.int64) if mask is None else mask
    return feed


def run_session(session: Any, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The model's (first) output for the batch `x` (a model of texts: token ids and `mask`);
    onnxruntime's errors pass through."""
    return session.run(None, feeds(session, x, mask))[0]
