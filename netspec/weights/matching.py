"""A weights file's tensors matched against a model's, by name and shape: nothing loads
silently in part.

In: the file's tensors (name -> TensorInfo, from files.py or from the loaded tensors), the
model's (name -> TensorInfo, from the checked IR or the built model), the key map of a zoo
file, the `rename` pairs, the `skip` paths. Out: ``Match``: which model tensor takes which
file tensor, and every problem by name (missing, unused, of another shape or kind, two file
tensors renamed onto one name), worded by ``describe``. The checker, the trainer and the
ejected program (which copies ``renamed_key``) all match this way. No torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from netspec.weights.files import TensorInfo
from netspec.weights.stages import under

COUNTER = "num_batches_tracked"


def renamed_key(key: str, rules: Sequence[tuple[str, str, bool]], rename: Sequence[tuple[str, str]]) -> str:
    """A file's key under the model's names: the zoo key map's rules (regexes, in order; the
    first final one that matches ends them), then the first `rename` prefix that matches."""
    for pattern, replacement, final in rules:
        new, n = re.subn(pattern, replacement, key)
        if n:
            key = new
            if final:
                break
    for old, new in rename:
        if key.startswith(old):
            return new + key[len(old):]
    return key


@dataclass
class Match:
    loaded: list[tuple[str, str]] = field(default_factory=list)  # (model key, file key), model order
    kept: list[str] = field(default_factory=list)  # model keys under `skip`: left at their initialisation
    skipped: list[str] = field(default_factory=list)  # file keys whose tensors land under `skip`: not loaded
    unused: list[str] = field(default_factory=list)  # file keys the model has no tensor for
    missing: list[str] = field(default_factory=list)  # model keys the file has no tensor for
    counters: list[str] = field(default_factory=list)  # BatchNorm step counters the file lacks: set to 0
    misshaped: list[tuple[str, str]] = field(default_factory=list)  # (model key, file key)
    wrong_kind: list[tuple[str, str]] = field(default_factory=list)  # float vs integer
    converted: list[tuple[str, str]] = field(default_factory=list)  # (model key, file dtype): another precision
    collisions: dict[str, list[str]] = field(default_factory=dict)  # name <- several file keys
    idle_renames: list[str] = field(default_factory=list)  # rename prefixes that matched no file key
    names: dict[str, str] = field(default_factory=dict)  # file key -> the name it has after renaming (when other)

    def fits(self, allow_unused: bool) -> bool:
        return not (self.missing or self.misshaped or self.wrong_kind or self.collisions or self.idle_renames
                    or (self.unused and not allow_unused))


def match(file: dict[str, TensorInfo], model: dict[str, TensorInfo], rules: Sequence[tuple[str, str, bool]] = (),
          rename: Sequence[tuple[str, str]] = (), skip: Sequence[str] = ()) -> Match:
    m = Match()
    names: dict[str, str] = {}  # model-side name -> file key
    used_renames: set[str] = set()
    for key in file:
        name = renamed_key(key, rules, rename)
        mapped = renamed_key(key, rules, ())
        for old, _ in rename:
            if mapped.startswith(old):
                used_renames.add(old)
                break
        if name in names:
            m.collisions.setdefault(name, [names[name]]).append(key)
            continue
        names[name] = key
    m.idle_renames = [old for old, _ in rename if old not in used_renames]
    for name, key in names.items():
        if any(under(name, p) for p in skip):
            m.skipped.append(key)
        elif name not in model:
            m.unused.append(key)
        if name != key:
            m.names[key] = name
    for name, want in model.items():
        if any(under(name, p) for p in skip):
            m.kept.append(name)
            continue
        found = names.get(name)
        if found is None:
            layer = name.rsplit(".", 1)[0]
            if name.endswith("." + COUNTER) and f"{layer}.running_mean" in names:
                m.counters.append(name)  # files saved before torch 0.4.1 have no step counter
            else:
                m.missing.append(name)
            continue
        got = file[found]
        if got.shape != want.shape:
            m.misshaped.append((name, found))
        elif got.floating != want.floating or (got.dtype == "bool") != (want.dtype == "bool"):
            m.wrong_kind.append((name, found))
        else:
            if got.dtype != want.dtype and want.floating:
                m.converted.append((name, got.dtype))
            m.loaded.append((name, found))
    return m


def _shape(info: TensorInfo) -> str:
    return "[" + ", ".join(str(d) for d in info.shape) + "]"


def describe(m: Match, file: dict[str, TensorInfo], model: dict[str, TensorInfo], allow_unused: bool) -> list[str]:
    """Every problem of `m`, one line each, by name with both shapes."""
    lines = []
    for name, keys in m.collisions.items():  # first: the other lines follow from it
        lines.append(f"renamed onto one name: {', '.join(keys[:-1])} and {keys[-1]} "
                     f"{'both' if len(keys) == 2 else 'all'} become {name}")
    for name, key in m.misshaped:
        shown = name if name == key else f"{name} (the file's {key})"
        lines.append(f"different shape: {shown}: {_shape(file[key])} in the file, {_shape(model[name])} in the model")
    for name, key in m.wrong_kind:
        lines.append(f"different kind: {name}: {file[key].dtype} in the file, {model[name].dtype} in the model")
    for name in m.missing:
        lines.append(f"missing from the file: {name} {_shape(model[name])}")
    if not allow_unused:
        for key in m.unused:
            shown = f"{key} (renamed {m.names[key]})" if key in m.names else key
            lines.append(f"not used by the model: {shown} {_shape(file[key])}")
    for old in m.idle_renames:
        lines.append(f'rename "{old}" matches no tensor of the file')
    return lines


def advice(m: Match, allow_unused: bool) -> str:
    """What would make the file fit: the layers to skip, the unused tensors to allow."""
    parts = []
    layers = list(dict.fromkeys(name.rsplit(".", 1)[0] for name, _ in m.misshaped))
    if m.collisions:
        return "each tensor of the file needs a name of its own: change or drop the `rename` entry that joins them"
    if layers and len(layers) <= 3:
        parts.append(f"`skip: [{', '.join(layers)}]` leaves {'them' if len(layers) > 1 else 'it'} at "
                     "their initialisation (trained from scratch, as a new head is)")
    if m.missing or m.idle_renames or m.collisions:
        parts.append('`rename: { "old.": "new." }` renames the file\'s key prefixes')
    if m.unused and not allow_unused and not (m.missing or m.misshaped):
        parts.append("`allow_unused: true` accepts tensors the model does not use")
    elif m.unused and not allow_unused:
        parts.append("`allow_unused: true` accepts unused tensors")
    return "; ".join(parts) or "the file and the model must hold the same tensors"
