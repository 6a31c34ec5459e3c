"""What ONNX export needs to know of a layer: whether it exports as it is, must be swapped
for its exact exportable equivalent (its row's `onnx_lowering`), or cannot be exported.

In: a layer name, its full keyword arguments and its per-sample input shape.
Out: `needs_lowering` (read by deploy/export.py), `onnx_problem` (read by `netspec check
--target onnx` and the export tests), and `ONNX_LOWERINGS` (layer -> lowering factory),
derived from the layer rows. Imports no torch.
"""

from __future__ import annotations

from netspec.catalogue.layers import LAYERS, LAYERS_LIST
from netspec.catalogue.shapes import per_dim
from netspec.catalogue.types import Shape

ONNX_LOWERINGS = {row.name: row.onnx_lowering for row in LAYERS_LIST if row.onnx_lowering}


def needs_lowering(layer: str, kwargs: dict, in_shape: Shape) -> bool:
    """Whether export must swap this layer for its exact exportable equivalent."""
    if not LAYERS[layer].onnx_lowering:
        return False
    if layer.startswith("Adaptive"):
        out = per_dim(kwargs["output_size"], len(in_shape) - 1)
        return any(o is not None and (n is None or n % o) for n, o in zip(in_shape[1:], out))
    if layer == "Threshold":
        return kwargs["threshold"] != 0
    if layer.startswith("CircularPad"):
        return len(in_shape) == int(layer[-2])  # spatial dims only, no channel dim
    return True


def onnx_problem(layer: str, kwargs: dict, in_shape: Shape) -> str | None:
    """What truly cannot be exported (checked by `netspec check --target onnx`); layers with
    a lowering are exportable."""
    spec = LAYERS[layer]
    if not spec.onnx:
        return spec.onnx_note or f"{layer} has no ONNX export"
    if layer.startswith("Adaptive"):
        out = per_dim(kwargs["output_size"], len(in_shape) - 1)
        for n, o in zip(in_shape[1:], out):
            if o is not None and n is None:
                return (f"{layer} over a variable-size (`_`) dimension exports only with output_size none "
                        "there; ONNX needs the pooling windows fixed")
    if layer == "LSTM" and kwargs.get("proj_size"):
        return "LSTM with proj_size has no ONNX export in torch"
    if layer == "Upsample" and kwargs.get("mode") in ("bicubic",) and kwargs.get("align_corners"):
        return "Upsample(mode=\"bicubic\", align_corners=true) does not match onnxruntime"
    return None
