"""Pretrained weights: what a `weights { from: ... }` file holds and how it fits a model,
read without torch (so `netspec check` finds every mismatch before any data or training).

    files.py     keys, shapes and dtypes from a file's header (safetensors, torch zip, torch legacy)
    zoo.py       torchvision's published weights: URL, SHA-256, cache, key maps to the zoo specs
    matching.py  a file's tensors against a model's: loaded, skipped, missing, unused, misshaped
    stages.py    freeze / unfreeze / param_groups as functions of tensor names

train/transfer.py applies them with torch (loading, requires_grad, optimizer groups).
"""
