"""Freezing, staged unfreezing and parameter groups, as functions of tensor names (no torch).

In: names (`conv1.0.weight`, `conv1.1`), the spec's `freeze` paths, `unfreeze` epochs and
`param_groups` paths. Out: the epoch from which a tensor trains, the group that holds it, and
the optimizer's groups in the order it holds them. The checker, `summary` and `diagram` read
these; train/transfer.py applies them to the torch model; `netspec eject` copies this module's
functions into its program, so both train the same parameters with the same groups.

    optimizer_groups(names, ["backbone"], {"backbone.layer4": 3}, ["head"])
    # [(1, None, [...]), (1, 0, ['head.weight', 'head.bias']), (3, None, ['backbone.layer4...'])]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def under(name: str, path: str) -> bool:
    """`name` is `path` or lies below it (`conv1.0.weight` is under `conv1`, not under `conv`)."""
    return name == path or name.startswith(path + ".")


def trains_from(name: str, freeze: Sequence[str], unfreeze: Mapping[str, int]) -> int | None:
    """The first epoch (counted from 1) in which tensor or module `name` trains: 1 unless a
    `freeze` path covers it; then the earliest `unfreeze` epoch of a path covering it, or
    None (frozen for the whole run)."""
    if not any(under(name, path) for path in freeze):
        return 1
    epochs = [epoch for path, epoch in unfreeze.items() if under(name, path)]
    return min(epochs) if epochs else None


def group_of(name: str, paths: Sequence[str]) -> int | None:
    """The index of the most specific `param_groups` path covering `name`; None: the
    optimizer's own settings."""
    best = None
    for i, path in enumerate(paths):
        if under(name, path) and (best is None or len(path) > len(paths[best])):
            best = i
    return best


def optimizer_groups(names: Sequence[str], freeze: Sequence[str], unfreeze: Mapping[str, int],
                     paths: Sequence[str]) -> list[tuple[int, int | None, list[str]]]:
    """The optimizer's parameter groups in the order it holds them: (the epoch the group joins,
    its `param_groups` index or None for the optimizer's own settings, its parameters' names
    in model order). The groups of epoch 1 come first (the optimizer's own settings, then the
    `param_groups` paths as written), then those each unfreeze epoch adds, in the same order.
    Empty groups are left out; parameters frozen for the whole run are in none."""
    stages: dict[int, dict[int | None, list[str]]] = {}
    for name in names:
        epoch = trains_from(name, freeze, unfreeze)
        if epoch is not None:
            stages.setdefault(epoch, {}).setdefault(group_of(name, paths), []).append(name)
    out: list[tuple[int, int | None, list[str]]] = []
    for epoch in sorted(stages):
        for group in [None, *range(len(paths))]:
            if group in stages[epoch]:
                out.append((epoch, group, stages[epoch][group]))
    return out
