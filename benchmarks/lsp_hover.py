"""Latency of `netspec lsp` as an editor sees it: requests over stdio from a real LSP client
(pygls's), on a generated 1,000-layer spec and on a 10-layer one, against the in-process
parse + check of the same 1,000-layer text (what a server that re-checked on every request
would pay), measured in the same run.

    .venv/bin/python benchmarks/lsp_hover.py            # prints a Markdown table
    .venv/bin/python benchmarks/lsp_hover.py --n 400

Target: a hover on the 1,000-layer spec under 100 ms once its first check has been published.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def spec(layers: int) -> str:
    """`layers` layers: a convolutional stem, then Linear/ReLU pairs."""
    body = ["    input: [3, 32, 32]", "    stem: Conv2d(16, 3, stride=2, padding=1)", "    ReLU", "    Flatten",
            "    fc0: Linear(64)"]
    i = 1
    while len(body) - 1 < layers:
        body += [f"    fc{i}: Linear(64)", "    ReLU"]
        i += 1
    body = body[:layers + 1]
    return "model big {\n" + "\n".join(body) + "\n}\n\ntrain {\n    loss: MSELoss\n    optimizer: Adam(lr=1e-3)\n}\n"


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.2f}"


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


class Session:
    def __init__(self) -> None:
        self.client = LanguageClient("lsp-bench", "1")
        self.published: dict[str, asyncio.Event] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_publish(params: types.PublishDiagnosticsParams) -> None:
            self.published.setdefault(params.uri, asyncio.Event()).set()

    async def start(self) -> None:
        await self.client.start_io(sys.executable, "-m", "netspec", "lsp", "--debounce-ms", "300", cwd=str(ROOT))
        await self.client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
        self.client.initialized(types.InitializedParams())

    async def open(self, path: Path) -> float:
        """Seconds from didOpen to the published diagnostics (the first check)."""
        uri = path.as_uri()
        event = self.published.setdefault(uri, asyncio.Event())
        event.clear()
        t = time.perf_counter()
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="netspec", version=1, text=path.read_text())))
        await asyncio.wait_for(event.wait(), 60)
        return time.perf_counter() - t

    async def timed(self, coro) -> float:
        t = time.perf_counter()
        result = await coro
        assert result is not None
        return time.perf_counter() - t

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


async def measure(folder: Path, layers: int, n: int) -> dict[str, list[float]]:
    text = spec(layers)
    path = folder / f"big{layers}.net"
    path.write_text(text)
    uri = path.as_uri()
    doc = types.TextDocumentIdentifier(uri=uri)
    lines = text.splitlines()
    layer_lines = [i for i, ln in enumerate(lines) if ":" in ln and "(" in ln and "input" not in ln
                   and ln.startswith("    ") and "loss" not in ln and "optimizer" not in ln][:layers]
    rng = random.Random(0)
    s = Session()
    await s.start()
    out: dict[str, list[float]] = {"first check (didOpen -> diagnostics)": [await s.open(path)]}
    hovers, completions, inlays, symbols = [], [], [], []
    for _ in range(n):  # on the layer's type, as a user points at it
        line = rng.choice(layer_lines)
        hovers.append(await s.timed(s.client.text_document_hover_async(types.HoverParams(
            text_document=doc, position=types.Position(line=line, character=lines[line].index(":") + 4)))))
    for _ in range(max(n // 10, 5)):
        line = rng.choice(layer_lines)
        completions.append(await s.timed(s.client.text_document_completion_async(types.CompletionParams(
            text_document=doc, position=types.Position(line=line, character=len(lines[line].split(":")[0]) + 3)))))
        inlays.append(await s.timed(s.client.text_document_inlay_hint_async(types.InlayHintParams(
            text_document=doc, range=types.Range(start=types.Position(line=0, character=0),
                                                  end=types.Position(line=len(lines), character=0))))))
        symbols.append(await s.timed(s.client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=doc))))
    edited = []
    for v in range(2, 2 + max(n // 20, 5)):  # hover right after a change, before the debounced check
        new = text.replace("Linear(64)", f"Linear({60 + v % 4})", 1)
        s.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=v),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=new)]))
        line = rng.choice(layer_lines)
        edited.append(await s.timed(s.client.text_document_hover_async(types.HoverParams(
            text_document=doc, position=types.Position(line=line, character=lines[line].index(":") + 4)))))
    await s.stop()
    out.update({"hover": hovers, "completion": completions, "inlay hints (whole file)": inlays,
                "document symbols": symbols, "hover just after an edit (re-checks first)": edited})
    return out


def in_process_check(layers: int, repeat: int = 7) -> list[float]:
    import netspec

    text = spec(layers)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        netspec.check(netspec.parse(text, "big.net"))
        times.append(time.perf_counter() - t)
    return times


async def main_async(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        small = await measure(Path(d), 10, n)
        big = await measure(Path(d), 1000, n)
    base = in_process_check(1000)
    b = statistics.median(base)
    print(f"baseline: parse + check of the 1,000-layer spec in this process = {b * 1000:.1f} ms (median of {len(base)})")
    print(f"requests over stdio, median of {n} hovers and {max(n // 10, 5)} of the others\n")
    print("| request | 10 layers (ms) | 1,000 layers (ms) | 1,000 layers p95 (ms) | 1,000 layers / baseline |")
    print("|---|---|---|---|---|")
    for key in big:
        print(f"| {key} | {ms(small[key])} | {ms(big[key])} | {p95(big[key]) * 1000:.2f} | "
              f"{statistics.median(big[key]) / b:.2f}x |")
    h = statistics.median(big["hover"]) * 1000
    print(f"\nhover on the 1,000-layer spec after the first check: median {h:.2f} ms, "
          f"p95 {p95(big['hover']) * 1000:.2f} ms (target < 100 ms): {'met' if p95(big['hover']) < 0.1 else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="hovers per spec")
    asyncio.run(main_async(ap.parse_args().n))


if __name__ == "__main__":
    main()
