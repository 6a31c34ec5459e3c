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
