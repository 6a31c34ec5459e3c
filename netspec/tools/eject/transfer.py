"""Pretrained weights, freezing and parameter groups in the ejected program.

In: ``ir.CheckedSpec`` (its `weights` section; `freeze`, `unfreeze`, `param_groups` in `train`).
Out: the program's constants (the weights file netspec resolved, its key map, renames, skips,
the ``Plan``), netspec's own code for them (train/transfer.py with weights/stages.py and
weights/matching.py, copied by source), and the glue lines that `make_loop`, `resume` and
`main` gain: the program loads the same tensors, freezes the same layers and builds the same
optimizer groups as `netspec train`, so it ends with the same weights.
"""

from __future__ import annotations

from netspec import ir
from netspec.tools.eject.source import Raw, const, copied_source, py

READ_WEIGHTS = '''
def read_weights(path: str) -> dict[str, torch.Tensor]:
    """The tensors of the weights file: safetensors, or torch.load(weights_only=True), which
    never runs code from the file (a netspec checkpoint gives its model)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and state.get("format") == "netspec-checkpoint-1":
        state = state["model"]
    return state
'''


def used(checked: ir.CheckedSpec) -> bool:
    return checked.weights is not None or bool(checked.train.freeze or checked.train.param_groups)


def constants(checked: ir.CheckedSpec) -> list[str]:
    """WEIGHTS (the file), WEIGHT_RULES (a zoo file's key map), RENAME, SKIP, ALLOW_UNUSED, PLAN."""
    from netspec.train.transfer import plan_of, weights_path

    out = ["", "# starting from trained weights (netspec resolved the file when it wrote this program)"]
    w = checked.weights
    if w is not None:
        path, rules, _ = weights_path(w)
        out += [f"WEIGHTS = {py(str(path.resolve()))}",
                const("WEIGHT_RULES", Raw([py(tuple(r)) for r in rules]),
                      "torchvision's names -> the zoo spec's (regex, replacement, final)") if rules
                else "WEIGHT_RULES: list = []",
                const("RENAME", Raw([py(tuple(r)) for r in w.rename]), "key prefixes renamed, first match wins")
                if w.rename else "RENAME: list = []",
                const("SKIP", [p.path for p in w.skip], "left at their initialisation") if w.skip
                else "SKIP: list[str] = []",
                f"ALLOW_UNUSED = {py(w.allow_unused)}"]
    else:
        out.append("WEIGHTS = None")
    plan = plan_of(checked.train)
    sched = checked.train.scheduler
    out.append(f"SCHEDULER_NAME = {py(sched.name if sched else None)}")
    if plan is None:
        out.append("PLAN = None  # every parameter trains, in the optimizer's one group")
    else:
        out.append("PLAN = Plan(  # what trains when: freeze, unfreeze, param_groups")
        out.append(f"    freeze={py(plan.freeze)},")
        out.append(f"    unfreeze={py(plan.unfreeze)},")
        out.append(f"    paths={py(plan.paths)},")
        out.append(f"    options={py(plan.options)},")
        out.append(f"    lr={py(plan.lr)},")
        out.append(")")
    return out


def code(checked: ir.CheckedSpec) -> str:
    """netspec's transfer code, copied: Plan, loading, freezing, groups, staged unfreezing."""
    from netspec.train import transfer
    from netspec.weights import matching, stages

    roots = ["Plan", "set_trainable", "trainable_groups", "start_epoch", "catch_up"]
    parts = [copied_source(stages, ["under", "trains_from", "optimizer_groups"])]
    if checked.weights is not None:
        roots.append("load_pretrained")
        parts.append(copied_source(matching, ["renamed_key", "COUNTER"]))
        parts.append(READ_WEIGHTS.strip("\n"))
    parts.append(copied_source(transfer, roots))
    return "# ---------------------------------------------------------------- pretrained weights, freezing " \
           "(netspec's)\n\n\n" + "\n\n\n".join(parts)


def glue(text: str, checked: ir.CheckedSpec) -> str:
    """The program's make_loop, resume and main with the weights loaded, the layers frozen and
    the staged unfreeze applied, as `netspec train` does them."""
    plan = checked.train.freeze or checked.train.param_groups
    load = ("\n    if WEIGHTS is not None:\n"
            "        tensors = read_weights(WEIGHTS)\n"
            "        kept = load_pretrained(model, tensors, WEIGHT_RULES, RENAME, SKIP, ALLOW_UNUSED)\n"
            "        print(f\"weights: {len(model.state_dict()) - len(kept)} of {len(model.state_dict())} tensors \"\n"
            "              f\"loaded from {WEIGHTS}\" + (f\"; left at their initialisation: {', '.join(SKIP)}\" "
            "if kept else \"\"))"
            if checked.weights is not None else "")
    freeze = "\n    frozen = set_trainable(model, PLAN, 1) if PLAN is not None else []" if plan else ""
    text = _replace(text, "    model = build_model().to(DEVICE)\n",
                    "    model = build_model().to(DEVICE)" + load + freeze + "\n")
    if plan:
        text = _replace(text, "                interval=SCHEDULER_INTERVAL)",
                        "                interval=SCHEDULER_INTERVAL, frozen_norms=frozen)")
        text = _replace(text, "    state = restore(loop, ckpt)\n",
                        "    if PLAN is not None:  # the groups a staged unfreeze had added by then\n"
                        "        loop.frozen_norms = catch_up(loop.model, loop.optimizer, loop.scheduler, PLAN, "
                        "ckpt[\"epoch\"], SCHEDULER_NAME)\n"
                        "    state = restore(loop, ckpt)\n")
    if checked.train.unfreeze:
        text = _replace(text, "    try:\n        fit(loop, state, args.epochs, train, validate if \"val\" in data else None,\n"
                              "            Monitor(MONITOR, MINIMIZE, MIN_DELTA, PATIENCE), end_of_epoch)",
                        "    def unfreeze(epoch: int) -> None:\n"
                        "        frozen = start_epoch(loop.model, loop.optimizer, loop.scheduler, PLAN, epoch, "
                        "SCHEDULER_NAME)\n"
                        "        if frozen is not None:\n"
                        "            loop.frozen_norms = frozen\n"
                        "            print(f\"epoch {epoch}: unfreezing \" + \", \".join(p for p, e in "
                        "PLAN.unfreeze.items() if e == epoch))\n\n"
                        "    late = [(p, e) for p, e in PLAN.unfreeze.items() if e > args.epochs]\n"
                        "    if late:  # as netspec train refuses it: the staged unfreeze would never happen\n"
                        "        sys.exit(f\"error: unfreeze: {late[0][0]} would train from epoch {late[0][1]}, but the \"\n"
                        "                 f\"run has {args.epochs} epochs; run at least {late[0][1]} (--epochs)\")\n\n"
                        "    try:\n        fit(loop, state, args.epochs, train, validate if \"val\" in data else None,\n"
                        "            Monitor(MONITOR, MINIMIZE, MIN_DELTA, PATIENCE), end_of_epoch, start_epoch=unfreeze)")
    return text


def optimizer_params(checked: ir.CheckedSpec) -> str:
    """What make_optimizer passes the optimizer: the trainable groups under a plan."""
    return "trainable_groups(model, PLAN, 1)" if checked.train.freeze or checked.train.param_groups \
        else "model.parameters()"


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        from netspec.errors import error

        raise error("eject: the program's glue has changed shape; cannot add the weights and freezing code")
    return text.replace(old, new, 1)
