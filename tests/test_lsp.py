"""`netspec lsp` driven by a real LSP client over stdio (pytest-lsp), one server per module.

Oracles: `netspec check --json` for diagnostics (positions, messages, help), torch for
shapes and parameter counts, `netspec fmt`'s formatter for formatting.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features  # noqa: E402

from tests.conftest import EXAMPLES, netspec_cmd  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")  # every test talks to the module's server
PUBLISH = types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS
TIMEOUT = 20.0

BLOCKS = """\
let width = 32

block conv_bn(c, k=3) {
    Conv2d(c, k, padding=k // 2)
    BatchNorm2d
    ReLU
}
"""

THREE_ERRORS = """\
model broken {
    input: [1, 28, 28]
    conv: Conv2D(32, 3)
    Flatten
    fc: Linear(10, bias=maybe)
    out: Linear(10, sizes=3)
}
"""

CNN = """\
import "blocks.net"

model cnn {
    input: [1, 28, 28]
    stem: conv_bn(width)
    down: Conv2d(32, 3, stride=2, padding=1)
    ReLU
    Flatten
    head: Linear(10)
}

data {
    batch_size: 64
    train: mnist(split="train")
}

train {
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-3)
}
"""


def recording_client() -> LanguageClient:
    """pytest-lsp's client, keeping every publishDiagnostics in order."""
    client = LanguageClient()
    client.published = []  # type: ignore[attr-defined]

    def on_publish(c: LanguageClient, params: types.PublishDiagnosticsParams) -> None:
        c.diagnostics[params.uri] = params.diagnostics
        c.published.append(params)  # type: ignore[attr-defined]

    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, PUBLISH: on_publish})
    return client


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[*netspec_cmd(), "lsp", "--debounce-ms", "150"],
                              client_factory=recording_client),
)
async def client(lsp_client: LanguageClient):
    result = await lsp_client.initialize_session(types.InitializeParams(
        capabilities=pytest_lsp.client_capabilities("visual-studio-code")))
    lsp_client.init_result = result  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lsp")
    (d / "blocks.net").write_text(BLOCKS)
    return d


# ---------------------------------------------------------------- helpers


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def doc_id(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


async def published(client: LanguageClient, uri: str, version: int | None = None,
                    after: int = 0) -> types.PublishDiagnosticsParams:
    """The first diagnostics for `uri` (of `version`) published after the `after`-th."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while loop.time() < deadline:
        for p in client.published[after:]:  # type: ignore[attr-defined]
            if p.uri == uri and (version is None or p.version == version):
                return p
        await asyncio.sleep(0.01)
    raise AssertionError(f"no diagnostics for {uri} version {version}")


async def open_doc(client: LanguageClient, path: Path, text: str | None = None) -> list[types.Diagnostic]:
    if text is None:
        text = path.read_text()
    else:
        path.write_text(text)
    uri = path.as_uri()
    n = len(client.published)  # type: ignore[attr-defined]
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="netspec", version=1, text=text)))
    return list((await published(client, uri, 1, n)).diagnostics)


async def change_doc(client: LanguageClient, path: Path, text: str, version: int) -> list[types.Diagnostic]:
    uri = path.as_uri()
    n = len(client.published)  # type: ignore[attr-defined]
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
    return list((await published(client, uri, version, n)).diagnostics)


def close_doc(client: LanguageClient, path: Path) -> None:
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=doc_id(path.as_uri())))


def check_json(path: Path, *extra: str) -> list[dict]:
    """The oracle: `netspec check --json` on the same file."""
    r = subprocess.run([*netspec_cmd(), "check", "--json", *extra, str(path)], capture_output=True, text=True,
                       timeout=60)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    # a file that checks is one summary object holding its warnings; one that fails, its diagnostics
    return [d for row in rows for d in (row["warnings"] if row.get("ok") else [row])]


def as_check(d: types.Diagnostic) -> tuple:
    """An LSP diagnostic in `check --json`'s terms: 1-based line/column, severity, message, help."""
    message, _, help_ = d.message.partition("\nhelp: ")
    severity = {types.DiagnosticSeverity.Error: "error", types.DiagnosticSeverity.Warning: "warning"}[d.severity]
    return (d.range.start.line + 1, d.range.start.character + 1, d.range.end.line + 1, d.range.end.character + 1,
            severity, message, help_ or None)


def check_here(path: Path) -> list[dict]:
    """`check --json --no-data`'s lines, computed in this process (the same calls as the CLI)."""
    import netspec
    from netspec.errors import NetspecError

    try:
        checked = netspec.load(str(path))
    except NetspecError as e:
        return [d.to_json() for d in e.diagnostics]
    return [w.to_json() for w in checked.warnings]


def from_check(j: dict) -> tuple:
    return (j["line"], j["column"], j["end"]["line"], j["end"]["column"], j["severity"], j["message"], j["help"])


async def hover_text(client: LanguageClient, path: Path, line: int, character: int) -> str:
    h = await client.text_document_hover_async(types.HoverParams(text_document=doc_id(path.as_uri()),
                                                                 position=pos(line, character)))
    assert h is not None, f"no hover at {line}:{character}"
    assert h.contents.kind == types.MarkupKind.Markdown
    return h.contents.value


async def completion_items(client: LanguageClient, path: Path, line: int, character: int) -> list:
    res = await client.text_document_completion_async(types.CompletionParams(
        text_document=doc_id(path.as_uri()), position=pos(line, character)))
    return res.items if isinstance(res, types.CompletionList) else list(res or [])


def torch_shapes(text: str, folder: Path) -> dict[str, tuple]:
    """Output shape and parameter count of each top-level module, by running the built model."""
    import torch

    import netspec

    path = folder / "oracle.net"
    path.write_text(text)
    checked = netspec.load(str(path))
    model = netspec.build(checked)
    out: dict[str, tuple] = {}
    x = torch.zeros(2, *checked.model.input_shape)
    for name, module in model.named_children():
        x = module(x)
        out[name] = (list(x.shape[1:]), sum(p.numel() for p in module.parameters()))
    return out


# ---------------------------------------------------------------- tests


async def test_initialize_advertises_features(client: LanguageClient):
    caps = client.init_result.capabilities  # type: ignore[attr-defined]
    assert client.init_result.server_info.name == "netspec"  # type: ignore[attr-defined]
    assert caps.hover_provider and caps.definition_provider and caps.document_symbol_provider
    assert caps.document_formatting_provider and caps.inlay_hint_provider
    assert ":" in caps.completion_provider.trigger_characters


async def test_three_errors_then_two(client: LanguageClient, folder: Path):
    path = folder / "three.net"
    diags = await open_doc(client, path, THREE_ERRORS)
    expected = [from_check(j) for j in check_json(path)]
    assert len(expected) == 3
    assert [as_check(d) for d in diags] == expected  # every error at once, at check's positions
    assert all(d.severity == types.DiagnosticSeverity.Error and d.source == "netspec" for d in diags)
    assert "did you mean `Conv2d`?" in diags[0].message
    assert (diags[0].range.start.line, diags[0].range.start.character) == (2, 10)  # `Conv2D`

    fixed = THREE_ERRORS.replace("Conv2D", "Conv2d")
    n = len(client.published)  # type: ignore[attr-defined]
    client.text_document_did_change(types.DidChangeTextDocumentParams(  # an incremental edit, as editors send
        text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=pos(2, 15), end=pos(2, 16)), text="d")]))
    diags = list((await published(client, path.as_uri(), 2, n)).diagnostics)
    path.write_text(fixed)
    assert len(diags) == 2
    assert [as_check(d) for d in diags] == [from_check(j) for j in check_json(path)]
    close_doc(client, path)


async def test_warnings_are_warnings(client: LanguageClient, folder: Path):
    path = folder / "warn.net"
    text = "model w {\n    input: [4]\n    ReLU(inplace=true)\n    Linear(2)\n}\n"
    diags = await open_doc(client, path, text)
    assert [as_check(d) for d in diags] == [from_check(j) for j in check_json(path)]
    assert [d.severity for d in diags] == [types.DiagnosticSeverity.Warning]
    close_doc(client, path)


async def test_data_pass_on_open(client: LanguageClient, folder: Path):
    (folder / "rows.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    path = folder / "csvspec.net"
    text = ('model m {\n    input: [2]\n    Linear(2)\n}\n\ndata {\n    train: csv("rows.csv", target="lable")\n}\n\n'
            "train {\n    loss: CrossEntropyLoss\n}\n")
    diags = await open_doc(client, path, text)
    expected = [from_check(j) for j in check_json(path)]
    assert expected and [as_check(d) for d in diags] == expected
    assert "lable" in diags[0].message
    close_doc(client, path)


async def test_hover_conv2d_shape_against_torch(client: LanguageClient, folder: Path):
    path = folder / "cnn.net"
    assert await open_doc(client, path, CNN) == []
    oracle = torch_shapes(CNN, folder)
    shape, params = oracle["down"]
    assert shape == [32, 14, 14]
    text = await hover_text(client, path, 5, 12)  # on `Conv2d`
    assert "`[32, 28, 28]` → `[32, 14, 14]`" in text
    assert f"{params:,} parameters" in text
    assert "torch.nn.Conv2d" in text and "2-D convolution" in text
    assert text == await hover_text(client, path, 5, 6)  # on its name
    close_doc(client, path)


async def test_hover_block_use_and_key(client: LanguageClient, folder: Path):
    path = folder / "cnn.net"
    await open_doc(client, path, CNN)
    text = await hover_text(client, path, 4, 12)  # `conv_bn(width)`
    assert "block conv_bn(c, k=3)" in text and "defined at blocks.net:3" in text
    shape, params = torch_shapes(CNN, folder)["stem"]
    assert f"`{shape}`".replace("'", "") in text.replace(" ", "").replace("`", "`") or str(shape) in text
    assert f"{params:,} parameters" in text
    text = await hover_text(client, path, 12, 6)  # `batch_size`
    assert "samples per step" in text and "at least 1" in text and "default: `32`" in text
    text = await hover_text(client, path, 17, 12)  # `CrossEntropyLoss`
    assert "torch.nn.CrossEntropyLoss" in text
    text = await hover_text(client, path, 4, 20)  # `width`, a let of the imported file
    assert "let width = 32" in text
    close_doc(client, path)


async def test_completion_after_conv(client: LanguageClient, folder: Path):
    path = folder / "typing.net"
    text = "model t {\n    input: [1, 28, 28]\n    Conv\n}\n"
    await open_doc(client, path, text)
    items = await completion_items(client, path, 2, 8)
    by_label = {i.label: i for i in items}
    assert {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d"} <= set(by_label)
    conv = by_label["Conv2d"]
    assert conv.insert_text == "Conv2d(${1:out_channels}, ${2:kernel_size})$0"
    assert conv.insert_text_format == types.InsertTextFormat.Snippet
    assert by_label["ReLU"].insert_text == "ReLU"
    assert {"input", "repeat", "residual", "add", "concat"} <= set(by_label)
    close_doc(client, path)


async def test_completion_arguments_keys_values_names(client: LanguageClient, folder: Path):
    path = folder / "complete.net"
    text = ('import "blocks.net"\nlet hidden = 64\nmodel t {\n    input: [1, 28, 28]\n    c: Conv2d(32, 3, )\n'
            "    \n}\ntrain {\n    \n    loss: \n    optimizer: \n    scheduler: \n    metrics: [\n}\n")
    await open_doc(client, path, text)
    labels = {i.label for i in await completion_items(client, path, 4, 21)}
    assert {"padding=", "stride=", "bias=", "hidden", "width"} <= labels
    assert "in_channels=" not in labels and "out_channels=" not in labels and "kernel_size=" not in labels
    labels = {i.label for i in await completion_items(client, path, 5, 4)}
    assert {"conv_bn", "Linear", "Conv2d"} <= labels
    labels = {i.label for i in await completion_items(client, path, 8, 4)}
    assert {"loss", "optimizer", "scheduler", "epochs", "metrics"} <= labels
    assert {"CrossEntropyLoss", "MSELoss"} <= {i.label for i in await completion_items(client, path, 9, 10)}
    assert {"Adam", "SGD"} <= {i.label for i in await completion_items(client, path, 10, 15)}
    assert {"StepLR", "none"} <= {i.label for i in await completion_items(client, path, 11, 15)}
    assert "accuracy" in {i.label for i in await completion_items(client, path, 12, 14)}
    labels = {i.label for i in await completion_items(client, path, 1, 0)}
    assert {"model", "block", "let", "import", "data", "train", "export"} <= labels
    close_doc(client, path)


async def test_definition_in_imported_file(client: LanguageClient, folder: Path):
    path = folder / "cnn.net"
    await open_doc(client, path, CNN)
    blocks_uri = (folder / "blocks.net").as_uri()
    loc = await client.text_document_definition_async(types.DefinitionParams(
        text_document=doc_id(path.as_uri()), position=pos(4, 12)))  # conv_bn
    assert isinstance(loc, types.Location) and loc.uri == blocks_uri
    assert loc.range == types.Range(start=pos(2, 0), end=pos(2, len("block conv_bn")))
    loc = await client.text_document_definition_async(types.DefinitionParams(
        text_document=doc_id(path.as_uri()), position=pos(4, 21)))  # width
    assert loc.uri == blocks_uri and loc.range.start == pos(0, 0)
    loc = await client.text_document_definition_async(types.DefinitionParams(
        text_document=doc_id(path.as_uri()), position=pos(0, 10)))  # the import
    assert loc.uri == blocks_uri
    close_doc(client, path)


async def test_document_symbols_outline(client: LanguageClient, folder: Path):
    path = EXAMPLES / "mnist.net"
    await open_doc(client, path)
    syms = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=doc_id(
        path.as_uri())))
    assert [s.name for s in syms] == ["conv_block", "mnist_cnn", "data", "train", "export"]
    model = syms[1]
    assert model.kind == types.SymbolKind.Class and model.detail == "[1, 28, 28] → [10]"
    layers = [(c.name, c.detail) for c in model.children if c.kind != types.SymbolKind.Property]
    oracle = torch_shapes((EXAMPLES / "mnist.net").read_text(), folder)
    assert [n for n, _ in layers] == list(oracle)
    for name, detail in layers:
        assert detail.endswith("→ " + str(oracle[name][0]))
    close_doc(client, path)


async def test_inlay_hints_are_torch_shapes(client: LanguageClient, folder: Path):
    path = EXAMPLES / "mnist.net"
    await open_doc(client, path)
    hints = await client.text_document_inlay_hint_async(types.InlayHintParams(
        text_document=doc_id(path.as_uri()), range=types.Range(start=pos(9, 0), end=pos(19, 0))))
    oracle = torch_shapes(path.read_text(), folder)
    assert [h.label for h in hints] == [f"→ {shape}" for shape, _ in oracle.values()]
    lines = path.read_text().splitlines()
    assert lines[hints[0].position.line][:hints[0].position.character] == "    conv1: conv_block(32)"
    close_doc(client, path)


async def test_formatting_is_netspec_fmt(client: LanguageClient, folder: Path):
    from netspec.syntax.format import format_text

    path = folder / "ugly.net"
    ugly = "model   u{\ninput:[4]\n  fc:Linear( 2,bias=false )   # head\n}\n"
    await open_doc(client, path, ugly)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=doc_id(path.as_uri()), options=types.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert len(edits) == 1 and edits[0].range.start == pos(0, 0)
    assert edits[0].new_text == format_text(ugly)
    await change_doc(client, path, edits[0].new_text, 2)
    assert list(await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=doc_id(path.as_uri()), options=types.FormattingOptions(tab_size=4, insert_spaces=True)))) == []
    await change_doc(client, path, "model u {\n    Linear(\n", 3)  # fmt refuses what does not parse
    assert await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=doc_id(path.as_uri()), options=types.FormattingOptions(tab_size=4, insert_spaces=True))) is None
    close_doc(client, path)


async def test_broken_documents_keep_diagnostics_and_server(client: LanguageClient, folder: Path):
    """Half-typed lines and unclosed braces: check's syntax error, the checker's errors for
    the rest, and every request still answered."""
    path = folder / "broken.net"
    good = ("model b {\n    input: [8]\n    fc1: Linaer(16)\n    fc2: Linear(\n    ReLU\n    out: Linear(2)\n}\n"
            "train {\n    loss: CrossEntropyLoss\n}\n")
    diags = await open_doc(client, path, good)
    syntax = [from_check(j) for j in check_json(path)]
    assert len(syntax) == 1 and "syntax error" in syntax[0][5]
    assert as_check(diags[0]) == syntax[0]  # check's syntax error first, as check gives it
    assert any("unknown layer `Linaer`" in d.message and d.range.start.line == 2 for d in diags[1:])

    versions = [
        "model b {\n    input: [8]\n    fc1: Linaer(16)\n",  # unclosed brace at the end
        "model b {\n    input: [8]\n    fc1: Linear(16\n",
        "model b {\n    input: [\n",
        "model b {\n    input: [8]\n    fc1: Linear(16) with weight=\n}\n",
        "model b {\n    input: [8]\n    ]]]] }}}} ((((\n    Linear(3)\n}\n",
        "model",
        "",
        "\ufeffmodel é {\n    input: [😀]\n}\n",
        "let a = 1 +\nlet b = (((((((\nmodel m { input: [a] Linear(b) }\n",
        "model m {\n    input: [4]\n    repeat 100000000 { Linear(4) }\n}\n",
        "model m {\n    input: [4]\n" + "    {\n" * 150 + "    }\n" * 150 + "}\n",
    ]
    for v, text in enumerate(versions, 2):
        diags = await change_doc(client, path, text, v)
        path.write_text(text)
        expected = [from_check(j) for j in check_here(path)]
        if expected and expected[0][0] == 0:  # no position (not a spec at all): the first line
            assert as_check(diags[0])[4:] == expected[0][4:] and diags[0].range.start == pos(0, 0)
        elif expected:
            got = as_check(diags[0])
            if text.startswith("\ufeff") and got[0] == 1:  # the editor's text keeps the byte-order mark
                got = (got[0], got[1] - 1, got[2], got[3] - 1, *got[4:])
            assert got == expected[0], text
        for line in range(0, min(text.count("\n") + 1, 6)):
            for character in (0, 4, 8, 12):
                p = pos(line, character)
                await client.text_document_hover_async(types.HoverParams(text_document=doc_id(path.as_uri()),
                                                                         position=p))
                await completion_items(client, path, line, character)
        await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=doc_id(
            path.as_uri())))
        await client.text_document_inlay_hint_async(types.InlayHintParams(
            text_document=doc_id(path.as_uri()), range=types.Range(start=pos(0, 0), end=pos(200, 0))))
    assert "more than 20,000 layers" in (await change_doc(client, path, versions[9], 99))[0].message
    close_doc(client, path)


async def test_import_error_shown_at_the_import(client: LanguageClient, folder: Path):
    (folder / "bad_blocks.net").write_text("block b(c) {\n    Linear(c\n}\n")
    path = folder / "uses_bad.net"
    diags = await open_doc(client, path, 'import "bad_blocks.net"\nmodel m {\n    input: [4]\n    b(2)\n}\n')
    first = diags[0]
    assert first.range.start.line == 0 and first.message.startswith("bad_blocks.net:3:1: syntax error")
    assert first.related_information[0].location.uri == (folder / "bad_blocks.net").as_uri()
    close_doc(client, path)


async def test_utf16_positions(client: LanguageClient, folder: Path):
    path = folder / "emoji.net"
    text = 'model m {\n    input: [4]\n    x: Linear(2) with weight=normal(std="😀😀") \n}\n'
    diags = await open_doc(client, path, text)
    assert len(diags) == 1
    j = from_check(check_json(path)[0])
    line = text.splitlines()[j[0] - 1]
    utf16 = len(line[:j[1] - 1].encode("utf-16-le")) // 2
    utf16_end = len(line[:j[3] - 1].encode("utf-16-le")) // 2
    assert (diags[0].range.start.character, diags[0].range.end.character) == (utf16, utf16_end)
    assert utf16_end - utf16 == j[3] - j[1] + 2  # each emoji is two UTF-16 units
    close_doc(client, path)


async def test_debounce_and_close(client: LanguageClient, folder: Path):
    path = folder / "typing2.net"
    text = "model m {\n    input: [4]\n    Linear(2)\n}\n"
    await open_doc(client, path, text)
    n = len(client.published)  # type: ignore[attr-defined]
    uri = path.as_uri()
    for v in range(2, 7):  # five quick edits, one check
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=v),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text.replace("2", f"Lx{v}"))]))
        await asyncio.sleep(0.02)
    last = await published(client, uri, 6, n)
    await asyncio.sleep(0.3)
    mine = [p for p in client.published[n:] if p.uri == uri]  # type: ignore[attr-defined]
    assert [p.version for p in mine] == [6] and "Lx6" in last.diagnostics[0].message
    n = len(client.published)  # type: ignore[attr-defined]
    close_doc(client, path)
    assert list((await published(client, uri, None, n)).diagnostics) == []


def test_a_request_whose_position_does_not_decode_gets_an_error_reply(tmp_path):
    """A hover at line -1 (or beyond 2**31) was dropped by pygls while decoding, with no reply:
    the editor waits for it forever. Raw JSON-RPC over stdio, as an editor sends it."""
    import select

    proc = subprocess.Popen([*netspec_cmd(), "lsp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.stdin is not None and proc.stdout is not None

    def send(message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        proc.stdin.flush()

    def reply(msg_id: int, timeout: float = 30.0) -> dict:
        buffer = b""
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            assert ready, f"no reply to request {msg_id} within {timeout} s"
            buffer += proc.stdout.read1(65536)
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                n = int(next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Length")).split(b":")[1])
                if len(rest) < n:
                    break
                message, buffer = json.loads(rest[:n]), rest[n:]
                if message.get("id") == msg_id:
                    return message

    try:
        uri = (tmp_path / "m.net").as_uri()
        send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
        reply(1)
        send({"method": "initialized", "params": {}})
        send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "netspec", "version": 1, "text": "model m {\n    input: [4]\n    Linear(3)\n}\n"}}})
        for msg_id, position in ((2, {"line": -1, "character": -1}), (3, {"line": 2**31, "character": 2**31})):
            send({"id": msg_id, "method": "textDocument/hover",
                  "params": {"textDocument": {"uri": uri}, "position": position}})
            assert reply(msg_id)["error"]["code"] == -32602  # invalid params, for that request
        send({"id": 4, "method": "textDocument/hover",
              "params": {"textDocument": {"uri": uri}, "position": {"line": 2, "character": 5}}})
        assert "Linear" in json.dumps(reply(4)["result"])  # and the server goes on
    finally:
        proc.kill()
        proc.wait()
