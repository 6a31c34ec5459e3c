"""How fast `netspec check` judges a 100 MB weights file: netspec's header-only reading
(weights/files.py: no tensor data, no torch) against reading the tensors with torch.load
(weights_only=True, with and without mmap) and safetensors' own header API, measured in the
same run on the same files (ResNet-50's state_dict: 320 tensors, 102 MB, page cache warm);
then `netspec check` of the zoo ResNet-50 spec starting from each file, as a whole process,
against `python -c "import torch"`.

    .venv/bin/python benchmarks/weights_check.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REPEAT = 7


def best_of(fn, repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def wall(cmd: list[str]) -> float:
    return best_of(lambda: subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT), 5)


def main() -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    import netspec
    from netspec.weights.files import read_header

    zoo = ROOT / "examples" / "zoo" / "resnet50.net"
    state = netspec.compile_file(str(zoo)).state_dict()
    folder = Path(tempfile.mkdtemp(prefix="netspec-weights-bench-"))
    files = {"torch zip (.pt)": folder / "r50.pt", "torch legacy (.pth)": folder / "r50_legacy.pth",
             "safetensors": folder / "r50.safetensors"}
    torch.save(state, files["torch zip (.pt)"])
    torch.save(state, files["torch legacy (.pth)"], _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in state.items()}, str(files["safetensors"]))
    size = files["torch zip (.pt)"].stat().st_size
    print(f"ResNet-50 state_dict: {len(state)} tensors, {size / 1e6:.1f} MB; median of {REPEAT}, page cache warm\n")
    print("| file | netspec header read (ms) | torch.load (ms) | torch.load mmap (ms) | safetensors safe_open (ms) "
          "| torch.load / netspec |")
    print("|---|---|---|---|---|---|")
    for name, path in files.items():
        ours = best_of(lambda: read_header(path))
        if name == "safetensors":
            def shapes() -> dict:
                with safe_open(str(path), framework="pt") as f:
                    return {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118

            st = best_of(shapes)
            from safetensors.torch import load_file

            full = best_of(lambda: load_file(str(path)))
            print(f"| {name} | {ours * 1e3:.1f} | {full * 1e3:.1f} (load_file) | - | {st * 1e3:.1f} | "
                  f"{full / ours:.0f}x |")
            continue
        full = best_of(lambda: torch.load(path, map_location="cpu", weights_only=True))
        mm = best_of(lambda: torch.load(path, map_location="cpu", weights_only=True, mmap=True)) \
            if "zip" in name else None
        print(f"| {name} | {ours * 1e3:.1f} | {full * 1e3:.1f} | {f'{mm * 1e3:.1f}' if mm else 'refused (legacy)'} | "
              f"- | {full / ours:.0f}x |")

    base = wall([sys.executable, "-c", "import torch"])
    print(f"\n`netspec check` (whole process) of zoo/resnet50.net with `weights {{ from: FILE }}`; "
          f"`python -c 'import torch'` = {base:.3f} s")
    print("| file | check (s) | check / import torch |")
    print("|---|---|---|")
    text = zoo.read_text()
    for name, path in [("(no weights section)", None), *files.items()]:
        spec = folder / "r50.net"
        spec.write_text(text + (f'\nweights {{\n    from: "{path}"\n}}\n' if path else ""))
        t = wall([sys.executable, "-m", "netspec", "check", str(spec)])
        print(f"| {name} | {t:.3f} | {t / base:.2f}x |")
    for path in files.values():
        path.unlink()
    (folder / "r50.net").unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
