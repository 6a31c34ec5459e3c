"""Wall time of `netspec check` / `netspec summary` as whole processes, per example, and
parse+check of a generated 1,000-layer spec, against the bare cost of `import torch`
(what any checker that builds the model must pay), measured in the same run.

    .venv/bin/python benchmarks/check_speed.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REPEAT = 5


def wall(cmd: list[str]) -> float:
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def big_spec(n: int) -> str:
    body = "\n".join(f"    fc{i}: Linear(64)\n    ReLU" for i in range(n // 2))
    return f"model big {{\n    input: [64]\n{body}\n}}\n"


def main() -> None:
    import netspec

    base = wall([sys.executable, "-c", "import torch"])
    print(f"baseline: python -c 'import torch' = {base:.3f} s (median of {REPEAT})\n")
    print("| example | check (s) | summary (s) | check / import torch |")
    print("|---|---|---|---|")
    zoo = [ROOT / "examples" / "zoo" / f"{n}.net" for n in ("resnet50", "densenet121")]  # the 0.5 s goal
    for f in [*sorted((ROOT / "examples").glob("*.net")), *zoo]:
        if subprocess.run([sys.executable, "-m", "netspec", "check", str(f)], capture_output=True, cwd=ROOT).returncode:
            print(f"| {f.name} | skipped: its data are not here (make data) | | |")
            continue
        c = wall([sys.executable, "-m", "netspec", "check", str(f)])
        s = wall([sys.executable, "-m", "netspec", "summary", str(f)])
        print(f"| {f.name} | {c:.3f} | {s:.3f} | {c / base:.2f}x |")
    text = big_spec(1000)
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        netspec.check(netspec.parse(text, "big.net"))
        times.append(time.perf_counter() - t)
    print(f"\n1,000-layer spec, parse + check in process: {statistics.median(times):.3f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
