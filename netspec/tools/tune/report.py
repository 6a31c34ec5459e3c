"""What a study shows: a line per finished trial, trials.csv, best.net, tune.png and the
summary (best trial, the spec's own values, parameter importances).

In: the study's trials (Optuna FrozenTrials with netspec's user attributes) and the checked
spec. Out: text lines and JSON objects for the CLI; files in the tune folder, each written
atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from netspec import ir
from netspec.errors import shell_command
from netspec.tools.tune.study import DONE, outcome
from netspec.util import atomic_write, atomic_write_text


def _value(t: Any) -> float | None:
    """A trial's value: its result, or a pruned trial's last reported one."""
    if t.values:
        return float(t.values[0])
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def shown_trials(trials: list[Any]) -> list[Any]:
    """The trials a user cares about: all but the budget gate's stand-downs, by number."""
    return sorted((t for t in trials if outcome(t) != "skipped"), key=lambda t: t.number)


def best_trial(trials: list[Any], minimize: bool) -> Any | None:
    complete = sorted((t for t in trials if outcome(t) == "complete" and t.values and math.isfinite(t.values[0])),
                      key=lambda t: t.number)
    if not complete:
        return None
    return (min if minimize else max)(complete, key=lambda t: t.values[0])  # the earliest of equals


def values_text(t: Any) -> str:
    return "  ".join(f"{k}={v}" for k, v in (t.user_attrs.get("netspec_values") or {}).items())


class Progress:
    """One line per trial as it finishes (any worker's, any machine's)."""

    def __init__(self, config: ir.SearchConfig, total: int, say: Any, as_json: bool):
        self.config, self.total, self.say, self.as_json = config, total, say, as_json
        self.seen: set[int] = set()
        self.done: list[Any] = []

    def skip_existing(self, trials: list[Any]) -> None:
        old = [t for t in trials if outcome(t) in (*DONE, "interrupted", "skipped")]
        self.seen |= {t.number for t in old}
        self.done = [t for t in old if outcome(t) in DONE]

    def update(self, trials: list[Any]) -> bool:
        """Say the trials finished since the last call, in the order they finished; whether
        there were any. The count and the best are those of the trials said so far."""
        new = [t for t in trials if t.number not in self.seen and outcome(t) in (*DONE, "interrupted", "skipped")]
        new.sort(key=lambda t: (t.datetime_complete or datetime.max, t.number))
        for t in new:
            self.seen.add(t.number)
            if outcome(t) == "skipped":
                continue
            if outcome(t) in DONE:
                self.done.append(t)
            best = best_trial(self.done, self.config.minimize)
            self.say(json.dumps(trial_json(t, len(self.done), self.total, best)) if self.as_json else
                     self.line(t, len(self.done), best))
        return bool(new)

    def line(self, t: Any, done: int, best: Any) -> str:
        kind = outcome(t)
        metric = self.config.metric
        head = f"trial {t.number:>3}"
        secs = t.user_attrs.get("netspec_seconds")
        tail = f"  {secs:.1f}s" if isinstance(secs, (int, float)) else ""
        if kind == "complete":
            mark = "  *best*" if best is not None and best.number == t.number else ""
            body = f"{metric} {_fmt(_value(t))}{mark}"
        elif kind == "pruned":
            body = f"pruned after epoch {t.user_attrs.get('netspec_epochs', '?')} ({metric} {_fmt(_value(t))})"
        elif kind == "failed":
            body = f"failed: {t.user_attrs.get('netspec_error')}"
        else:
            body = "stopped before it finished; it will be retried"
        count = f"[{done}/{self.total}]" if kind in DONE else "[-]"
        best_text = f"  (best {_fmt(best.values[0])}, trial {best.number})" if best is not None and kind in DONE \
            and best.number != t.number else ""
        return f"{head} {count:>9}  {body}{best_text}  {values_text(t)}{tail}".rstrip()


def trial_json(t: Any, done: int, total: int, best: Any) -> dict[str, Any]:
    return {"trial": t.number, "state": outcome(t), "value": _value(t), "done": done, "of": total,
            "values": t.user_attrs.get("netspec_values") or {}, "epochs": t.user_attrs.get("netspec_epochs"),
            "seconds": t.user_attrs.get("netspec_seconds"), "run": t.user_attrs.get("netspec_run"),
            "error": t.user_attrs.get("netspec_error"),
            "best": None if best is None else {"trial": best.number, "value": float(best.values[0])}}


# ---------------------------------------------------------------- files


def trials_csv(trials: list[Any], config: ir.SearchConfig) -> str:
    keys = [p.key for p in config.params]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", "state", config.metric, *keys, "epochs", "seconds", "run", "worker", "retry_of",
                "baseline", "error"])
    for t in shown_trials(trials):
        vals = t.user_attrs.get("netspec_values") or {}
        if outcome(t) in ("waiting", "running"):  # a queued retry carries its original's attributes
            w.writerow([t.number, outcome(t), "", *(vals.get(k, "") for k in keys), "", "", "", "",
                        t.system_attrs.get("failed_trial", ""), "", ""])
            continue
        w.writerow([t.number, outcome(t), "" if _value(t) is None else repr(_value(t)), *(vals.get(k, "") for k in keys),
                    t.user_attrs.get("netspec_epochs", ""), t.user_attrs.get("netspec_seconds", ""),
                    t.user_attrs.get("netspec_run", ""), t.user_attrs.get("netspec_worker", ""),
                    t.system_attrs.get("failed_trial", ""), "yes" if t.user_attrs.get("netspec_baseline") else "",
                    t.user_attrs.get("netspec_error", "")])
    return buf.getvalue()


def best_net_text(job_spec: ir.Spec, config: ir.SearchConfig, best: Any, study: str, folder: Path) -> str:
    """best.net: the spec with the best trial's values written in (imports inlined, data
    paths absolute, as a run folder's spec.net), headed by where it came from."""
    from netspec.tools.tune.space import trial_spec, value_exprs
    from netspec.train.runs import resolved_spec_text

    spec = trial_spec(job_spec, value_exprs(config, best.params))
    head = (f"# best of study `{study}` ({folder}): trial {best.number}, {config.metric} {best.values[0]:.6g}\n"
            f"# values: {values_text(best)}\n"
            "# retrain it (same seed, same result): netspec train best.net\n")
    return head + resolved_spec_text(spec)


def tune_image(trials: list[Any], config: ir.SearchConfig, model: str) -> Any:
    from netspec.train import plot

    shown = [t for t in shown_trials(trials) if outcome(t) in ("complete", "pruned")]
    complete = [t for t in shown if outcome(t) == "complete"]
    pruned = [t for t in shown if outcome(t) == "pruned"]
    best_xs: list[float] = []
    best_ys: list[float] = []
    best: float | None = None
    for t in complete:  # a step line: the best so far changes at the trial that beat it
        v = t.values[0]
        if best is not None:
            best_xs.append(t.number)
            best_ys.append(best)
        if best is None or (v < best if config.minimize else v > best):
            best = v
        best_xs.append(t.number)
        best_ys.append(v if best is None else best)
    if complete and best is not None:
        best_xs.append(shown[-1].number)
        best_ys.append(best)
    series = [{"label": "best so far", "xs": best_xs, "ys": best_ys, "markers": False},
              {"label": "complete trials", "xs": [t.number for t in complete], "ys": [t.values[0] for t in complete],
               "scatter": True}]
    if pruned:
        series.append({"label": "pruned (last epoch run)", "xs": [t.number for t in pruned],
                       "ys": [_value(t) for t in pruned], "scatter": True})
    done = sum(1 for t in trials if outcome(t) in DONE)
    top = best_trial(trials, config.minimize)
    title = f"{model}: {config.metric} per trial ({done} done" + \
        (f", best {top.values[0]:.4g} at trial {top.number})" if top is not None else ")")
    img, draw = plot.new_canvas(640, 400)
    plot.line_panel(draw, (0, 8, 640, 400), series, title, xlabel="trial",
                    note=("lower" if config.minimize else "higher") + " is better",
                    marker_x=top.number if top is not None else None,
                    marker_text=f"best: trial {top.number}" if top is not None else "")
    return plot.finish(img)


def write_files(folder: Path, trials: list[Any], config: ir.SearchConfig, spec: ir.Spec, study: str,
                model: str, final: bool) -> dict[str, str]:
    """trials.csv (always), and at the end best.net and tune.png."""
    files = {"trials": str(folder / "trials.csv")}
    atomic_write_text(folder / "trials.csv", trials_csv(trials, config))
    if not final:
        return files
    best = best_trial(trials, config.minimize)
    if best is not None:
        atomic_write_text(folder / "best.net", best_net_text(spec, config, best, study, folder))
        files["best"] = str(folder / "best.net")
    if any(outcome(t) in ("complete", "pruned") for t in trials):
        img = tune_image(trials, config, model)
        atomic_write(folder / "tune.png", lambda tmp: img.save(tmp, format="PNG"))
        files["plot"] = str(folder / "tune.png")
    return files


# ---------------------------------------------------------------- the summary


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (PED-ANOVA) over the complete trials; {} when there are
    too few trials or one key only."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if outcome(t) == "complete"]
    if len(complete) < 3:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = optuna.importance.get_param_importances(study, trials=complete)  # type: ignore[call-arg]
        except TypeError:
            found = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            return {}
    return {str(k): round(float(v), 4) for k, v in found.items() if math.isfinite(float(v))}


def queued_retries(trials: list[Any]) -> list[int]:
    """The stopped trials whose retry waits in the queue."""
    return sorted(t.system_attrs["failed_trial"] for t in trials
                  if outcome(t) == "waiting" and t.system_attrs.get("failed_trial") is not None)


def summary(study: Any, trials: list[Any], config: ir.SearchConfig, name: str, folder: Path, total: int,
            files: dict[str, str], spec_path: str) -> dict[str, Any]:
    c = {k: 0 for k in ("complete", "pruned", "failed", "interrupted", "running", "waiting")}
    for t in trials:
        kind = outcome(t)
        if kind in c:
            c[kind] += 1
    best = best_trial(trials, config.minimize)
    base = next((t for t in shown_trials(trials) if t.user_attrs.get("netspec_baseline") and outcome(t) == "complete"),
                None)
    return {
        "study": name, "folder": str(folder), "spec": spec_path, "metric": config.metric,
        "direction": "minimize" if config.minimize else "maximize", "requested": total,
        "done": c["complete"] + c["pruned"] + c["failed"], "trials": c,
        "best": None if best is None else {"trial": best.number, "value": float(best.values[0]),
                                           "values": best.user_attrs.get("netspec_values") or {},
                                           "run": best.user_attrs.get("netspec_run")},
        "baseline": None if base is None else {"trial": base.number, "value": float(base.values[0]),
                                               "values": base.user_attrs.get("netspec_values") or {}},
        "importances": importances(study) if best is not None else {},
        "files": files,
    }


def summary_text(s: dict[str, Any]) -> str:
    c = s["trials"]
    parts = [f"{c[k]} {k}" for k in ("complete", "pruned", "failed") if c[k]]
    lines = [f"study {s['study']} ({s['folder']}): {s['done']} of {s['requested']} trials done"
             + (f" ({', '.join(parts)})" if parts else "")]
    best, base = s["best"], s["baseline"]
    if best is None and c["failed"]:
        lines.append(f"no trial completed: no best values (the errors are in {s['files']['trials']})")
    elif best is None:
        lines.append("no trial completed yet")
    else:
        values = "  ".join(f"{k}={v}" for k, v in best["values"].items())
        lines.append(f"best: trial {best['trial']}, {s['metric']} {best['value']:.4g}  {values}")
    if base is not None:
        change = ""
        if best is not None:
            change = f" (the search: {best['value'] - base['value']:+.4g})"
        lines.append(f"the spec's own values (trial {base['trial']}): {s['metric']} {base['value']:.4g}{change}")
    if s["importances"]:
        lines.append("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in s["importances"].items()))
    names = ", ".join(Path(p).name for p in s["files"].values())
    lines.append(f"wrote {names} in {s['folder']}/")
    if best is not None:
        diff = shell_command("netspec", "diff", str(s["files"].get("best")), str(s["spec"]))
        lines.append(f"best run: {best['run']}/; see the changes: {diff}")
    return "\n".join(lines)
