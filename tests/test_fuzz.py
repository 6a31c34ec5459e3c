"""Fuzz the front end: mutated specs produce a NetspecError or a checked spec, nothing else."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from netspec.errors import NetspecError
from netspec.syntax.format import format_text
from tests.conftest import EXAMPLES, FIXTURES

SEEDS = [p.read_text() for p in sorted(EXAMPLES.glob("*.net"))] + [
    p.read_text() for p in sorted((FIXTURES / "valid").glob("*.net"))
]
# NETSPEC_FUZZ=N multiplies the example counts (a long local hunt); CI runs a fixed sequence.
SCALE = int(os.environ.get("NETSPEC_FUZZ", "1"))
DERANDOMIZE = bool(os.environ.get("CI"))
TOKENS = ["{", "}", "(", ")", "[", "]", ",", ":", "=", ";", "\n", "-", "**", "//", "_", "0", "1e999", "9" * 30,
          "Linear", "repeat", "residual", "with", "let", "block", "model", "import", '"', "none", "x", "#", "\t", "é"]


def front_end(text: str) -> None:
    try:
        checked = netspec.check(netspec.parse(text, "fuzz.net"))
        assert checked.model is not None
    except NetspecError as e:
        rendered = e.render()
        assert "fuzz.net" in rendered or "--set" in rendered or rendered


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=DERANDOMIZE)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3),
                                                  st.sampled_from(TOKENS)), min_size=1, max_size=4))
def test_mutations_raise_only_netspec_errors(seed, edits):
    text = seed
    for pos, kind, tok in edits:
        i = pos % (len(text) + 1)
        if kind == 0:
            text = text[:i] + tok + text[i:]
        elif kind == 1:
            text = text[:i] + text[i + len(tok):]
        elif kind == 2:
            text = text[:i] + tok + text[i + 1:]
        else:
            text = text[:i] + text[i:][::-1][:5] + text[i + 5:]
    front_end(text)


@settings(max_examples=150 * SCALE, deadline=None, derandomize=DERANDOMIZE)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    front_end(text)


@settings(max_examples=100 * SCALE, deadline=None, derandomize=DERANDOMIZE)
@given(st.sampled_from(SEEDS), st.integers(0, 10_000), st.sampled_from(TOKENS))
def test_fmt_never_crashes(seed, pos, tok):
    i = pos % (len(seed) + 1)
    text = seed[:i] + tok + seed[i:]
    try:
        out = format_text(text, "fuzz.net")
    except NetspecError:
        return
    assert netspec.parse(out, "fuzz.net") == netspec.parse(text, "fuzz.net")


def test_deep_nesting_is_an_error_not_a_crash():
    for depth in (200, 3000):
        text = "let x = " + "(" * depth + "1" + ")" * depth + "\nmodel m { input: [1]\n Linear(1) }\n"
        front_end(text)
        text = "model m { input: [1]\n" + "residual { " * depth + "ReLU" + " }" * depth + "\n}\n"
        front_end(text)
        text = "let x = " + "-" * depth + "1\nmodel m { input: [1]\n Linear(1) }\n"
        front_end(text)


def test_huge_numbers_and_repeats():
    front_end("let x = 10 ** 10 ** 10\nmodel m { input: [1]\n Linear(1) }\n")
    front_end("model m { input: [1]\n repeat 1000000000 { ReLU }\n}\n")
    front_end("model m { input: [100000000000, 100000000000]\n Flatten\n Linear(1) }\n")
