"""Shared test helpers. Tests never touch the network: NETSPEC_OFFLINE=1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["NETSPEC_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


SAID: set[str] = set()  # the image warnings said in this process (as a netspec command, once each)


def say(result):
    """What the CLI does with an image folder's scan or load: each warning once (`warning: ...`)
    and a build's `decoded ...` line, on stderr. The library returns them; tests of its
    functions say them here, as a command would."""
    for w in result.warnings:
        if w not in SAID:
            SAID.add(w)
            print(f"warning: {w}", file=sys.stderr)
    if getattr(result, "decoded", None):
        print(result.decoded, file=sys.stderr)
    return result


def write_spec(tmp_path: Path, text: str, name: str = "spec.net") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def have_dataset(name: str) -> bool:
    from netspec.data.datasets import find_dataset

    return find_dataset(name, None)[0] is not None


def netspec_cmd() -> list[str]:
    return [sys.executable, "-m", "netspec"]


@pytest.fixture
def spec_file(tmp_path):
    def make(text: str, name: str = "spec.net") -> str:
        return write_spec(tmp_path, text, name)

    return make


def have_wordnet() -> bool:
    """The text examples' data set (`make data`: Debian's wordnet-base -> wordnet_nouns CSVs)."""
    from netspec.data.datasets import cache_dir

    return (cache_dir() / "wordnet_nouns" / ".complete").is_file()


def pytest_collection_modifyitems(config, items):
    """Tests parametrized over the examples skip the text examples when their data set is
    missing (their vocabulary size comes from the data); the text tests build their own data."""
    if have_wordnet():
        return
    skip = pytest.mark.skip(reason="the WordNet text data set is not built (make data, as root: wordnet-base)")
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for value in params.values():
            if isinstance(value, (str, Path)) and str(value).endswith(".net") and "wordnet_nouns" in _read(value):
                item.add_marker(skip)


def _read(value) -> str:
    path = Path(value) if Path(value).is_absolute() else EXAMPLES / str(value)
    try:
        return path.read_text()
    except OSError:
        return ""
