"""`netspec eject`: a checked spec -> one standalone, readable PyTorch training program.

In: ``ir.CheckedSpec`` and the data it names (read once, as `train` reads it, to bake the
training-split facts into the program: normalisation statistics, class vocabularies, CSV
columns). Out: the text of a Python program that imports torch and numpy (Pillow for image
folders), never netspec, and does what `netspec train` does: the same `nn.Sequential(
OrderedDict)` built under the same seed, the same data, split and sample order, the same
preprocessing, augmentation, loss, optimizer (fused where netspec fuses), scheduler, metrics,
early stopping and checkpoint. With the same seed it ends with weights `torch.equal` to the
run's (tests/test_eject.py checks it for every example).

netspec's own modules (LSTM returning the sequence, Add/Concat/Multiply, the input
transform, the augmentation ops, the metrics, and the training loop itself: train/loop.py)
are copied into the program from their source, so it is exactly the code netspec runs; the
program adds a small `main()` that wires data, model, loop and checkpoint together. What a
one-file program leaves out: DDP, image caches on disk (it decodes image folders into
memory), TensorBoard, curves and the confusion picture.

    netspec eject examples/mnist.net -o train_mnist.py && python train_mnist.py --epochs 1

Modules: ``source`` (values and copied code as Python source, line wrapping), ``model``
(`build_model()`), ``data`` (`load_data()` and its readers), ``program`` (the constants,
the training code and `main()`, assembled and signed).
"""

from __future__ import annotations

from netspec.tools.eject.program import EjectError, check_output, eject, write_program
from netspec.tools.eject.source import copied_source, py

__all__ = ["EjectError", "check_output", "copied_source", "eject", "py", "write_program"]
