"""The text examples against a classical baseline, in one run: TF-IDF + logistic regression
(scikit-learn) and `netspec train` of examples/text_bag.net and examples/text_classifier.net
on the same WordNet noun-definition CSVs (`make data`), test accuracy and wall time of each.

scikit-learn is a benchmark-only dependency: if it is not importable, it is installed (1.9.1,
with its dependencies but numpy) into a private folder of netspec's cache,
`<cache>/netspec/bench-sklearn`, which only this script puts on sys.path; `--no-install`
only says how to get it. The baseline is the best of the classical ones tried on this data
(word unigrams of two or more letters, lower case, sublinear tf; C=10).

The netspec runs are the commands a user types, `netspec train EXAMPLE --out DIR --json`, each
timed from start to exit (data reading, tokenizer, training, test evaluation and the run folder
included), with torch's default threads; their CPU time (user + system) is measured too. The
load average before and after each is printed: wall times mean something only on an otherwise
quiet machine (`--threads 1` makes the CPU time a fair single-core figure on a busy one: two
threads on oversubscribed cores spend most of their time waiting for each other). `--taskset 0,1` pins every run
to those cores (2 cores: the README's figures).

    .venv/bin/python benchmarks/text_baseline.py [--taskset 0,1] [--threads 1] [--only text_bag]

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netspec.data.datasets import cache_dir  # noqa: E402

SKLEARN = ["scikit-learn==1.9.1", "scipy", "joblib", "threadpoolctl", "cloudpickle", "narwhals"]  # not numpy: the venv's
DATA = cache_dir() / "wordnet_nouns"
EXAMPLES = ["text_bag", "text_classifier"]


def sklearn(install: bool) -> None:
    """Make scikit-learn importable (from the private folder, installed there if allowed)."""
    private = cache_dir() / "bench-sklearn"
    sys.path.insert(0, str(private))
    try:
        importlib.import_module("sklearn")
        return
    except ImportError:
        pass
    if not install:
        sys.exit(f"scikit-learn is not importable; run without --no-install, or: python -m pip install --target "
                 f"{private} --no-deps {' '.join(SKLEARN)}")
    print(f"installing {', '.join(SKLEARN)} into {private} (this script's own folder)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(private), "--no-deps", *SKLEARN],
                   check=True)
    importlib.invalidate_caches()
    importlib.import_module("sklearn")


def read(path: Path) -> tuple[list[str], list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def tfidf() -> dict:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = read(DATA / "train.csv")
    test_x, test_y = read(DATA / "test.csv")
    start, cpu = time.perf_counter(), time.process_time()
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    features = vectorizer.fit_transform(train_x)
    model = LogisticRegression(C=10, max_iter=3000).fit(features, train_y)
    accuracy = float((model.predict(vectorizer.transform(test_x)) == np.array(test_y)).mean())
    return {"name": "TF-IDF + logistic regression (scikit-learn)", "accuracy": accuracy,
            "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
            "what": f"{features.shape[1]:,} word features, C=10"}


def netspec_run(example: str, taskset: str | None, threads: int | None, out: Path) -> dict:
    cmd = [sys.executable, "-m", "netspec", "train", str(ROOT / "examples" / f"{example}.net"), "--out",
           str(out / example), "--json"]
    if taskset:
        cmd = ["taskset", "-c", taskset, *cmd]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if r.returncode != 0:
        sys.exit(f"netspec train {example} failed:\n{r.stderr}")
    final = next(json.loads(line)["final"] for line in r.stdout.splitlines() if line.startswith('{"final"'))
    epochs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"epoch"')]
    return {"name": f"netspec train examples/{example}.net", "accuracy": final["test_accuracy"], "seconds": seconds,
            "cpu": cpu,
            "what": f"{len(epochs)} epochs, {sum(e['seconds'] for e in epochs):.0f} s in epochs; load average "
                    f"{load:.1f} before, {os.getloadavg()[0]:.1f} after"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--taskset", help="pin the runs to these CPU cores, e.g. 0,1")
    ap.add_argument("--only", choices=EXAMPLES, help="one example only")
    ap.add_argument("--threads", type=int, help="torch threads of the netspec runs (OMP_NUM_THREADS; default torch's)")
    ap.add_argument("--no-install", action="store_true", help="do not install scikit-learn; say how")
    args = ap.parse_args()
    if not (DATA / "train.csv").is_file():
        sys.exit(f"{DATA}: the WordNet CSVs are not there; run `make data` (needs Debian's wordnet-base)")
    sklearn(not args.no_install)
    if args.taskset:
        if shutil.which("taskset") is None:
            sys.exit("--taskset needs the taskset command (util-linux)")
        os.sched_setaffinity(0, {int(c) for c in args.taskset.split(",")})
    cores = len(os.sched_getaffinity(0))
    rows = [tfidf()]
    with tempfile.TemporaryDirectory(prefix="netspec-text-") as tmp:
        for example in [args.only] if args.only else EXAMPLES:
            rows.append(netspec_run(example, args.taskset, args.threads, Path(tmp)))
    base = rows[0]
    print(f"WordNet noun definitions -> 10 categories ({DATA}); {cores} CPU cores; netspec with "
          f"{args.threads or 'torch default'} thread(s); load average now {os.getloadavg()[0]:.1f}\n")
    print("| model | test accuracy | vs TF-IDF | wall time | CPU time | |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        diff = (r["accuracy"] - base["accuracy"]) * 100
        print(f"| {r['name']} | {r['accuracy']:.2%} | {diff:+.2f} points | {r['seconds']:.0f} s | {r['cpu']:.0f} s | "
              f"{r['what']} |")


if __name__ == "__main__":
    main()
