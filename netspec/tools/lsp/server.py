"""`netspec lsp`: the language server (pygls 2.x) on stdin/stdout.

In: LSP messages from an editor. Out: diagnostics as `netspec check` gives them (published
on open and save at once, after a pause in typing on change), hover, completion, go to
definition, document symbols, formatting (`netspec fmt`) and inlay hints (each layer's
output shape). Every request reads the document's latest ``Analysis`` (document.py), made
once per version of its text; none re-parses a document the server has already analysed.

The data pass of `netspec check` (bounded reads of the data files) runs on open and save;
while typing it runs too when it took under DATA_ON_CHANGE_S the last time.

    netspec lsp                       # speaks LSP on stdin/stdout; logs on stderr
    netspec lsp --debounce-ms 100
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.uris import to_fs_path

from netspec import __version__
from netspec.tools.lsp import features
from netspec.tools.lsp.completion import complete
from netspec.tools.lsp.document import Analysis, analyse

log = logging.getLogger("netspec.lsp")
DATA_ON_CHANGE_S = 0.1  # a data pass faster than this also runs while typing
T = TypeVar("T")


class _Undecodable:
    """A request whose parameters did not decode: answered with an error, never handled."""

    jsonrpc = "2.0"


class NetspecProtocol(LanguageServerProtocol):
    """pygls's protocol, except that a request whose parameters do not decode (a position of
    -1, or beyond 2**31) gets the JSON-RPC error for its id: pygls drops it, and the editor
    would wait for an answer forever."""

    def structure_message(self, data: dict[str, Any]):  # noqa: ANN201 - pygls's message types
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if not (isinstance(data, dict) and "id" in data and "method" in data):
                raise
            error = exc if isinstance(exc, JsonRpcInvalidParams) else JsonRpcInvalidParams()
            self._send_response(data["id"], None, error.to_response_error())
            return _Undecodable()

    def handle_message(self, message: Any) -> None:
        if not isinstance(message, _Undecodable):
            super().handle_message(message)


class NetspecServer(LanguageServer):
    def __init__(self, debounce_s: float = 0.3):
        super().__init__("netspec", __version__, protocol_cls=NetspecProtocol)
        self.debounce_s = debounce_s
        self.analyses: dict[str, Analysis] = {}  # uri -> the latest analysis of its text
        self.data_seconds: dict[str, float] = {}  # uri -> how long its last data pass took
        self.pending: dict[str, asyncio.Task] = {}
        self.lock = threading.Lock()
        self.snippets = True

    # ------------------------------------------------------------ documents

    def file_of(self, uri: str) -> str:
        path = to_fs_path(uri) if uri.startswith("file:") else None
        return features.file_of(path, os.getcwd())

    def text_of(self, uri: str) -> str:
        return self.workspace.get_text_document(uri).source

    def analysis(self, uri: str) -> Analysis:
        """The analysis of the document's current text: cached, else made now (no data pass)."""
        text = self.text_of(uri)
        with self.lock:
            a = self.analyses.get(uri)
        if a is not None and a.text == text:
            return a
        a = analyse(text, self.file_of(uri))
        with self.lock:
            self.analyses[uri] = a
        return a

    def coords(self, a: Analysis) -> features.Coords:
        return features.Coords(a.lines, self.workspace.position_codec, a.bom)

    # ------------------------------------------------------------ diagnostics

    def schedule(self, uri: str, delay: float, read_data: bool) -> None:
        """Analyse and publish after `delay`; a newer change cancels a pending one (debounce)."""
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self.validate(uri, delay, read_data))

    async def validate(self, uri: str, delay: float, read_data: bool) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            doc = self.workspace.get_text_document(uri)
            text, version = doc.source, doc.version
            data = read_data or self.data_seconds.get(uri, 1.0) < DATA_ON_CHANGE_S
            with self.lock:
                a = self.analyses.get(uri)
            if a is None or a.text != text or (data and a.data_due):
                # (a request may have analysed this text already: a hover just after an edit)
                loop = asyncio.get_running_loop()
                a = await loop.run_in_executor(None, functools.partial(analyse, text, self.file_of(uri),
                                                                       read_data=data))
            if self.workspace.get_text_document(uri).source != text:
                return  # changed meanwhile: the newer change publishes
            with self.lock:
                self.analyses[uri] = a
            if a.data_checked:
                self.data_seconds[uri] = a.data_seconds
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                uri=uri, version=version, diagnostics=features.lsp_diagnostics(a, self.coords(a))))
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - a bug in one analysis must not stop the server
            log.exception("checking %s failed", uri)
        finally:
            if self.pending.get(uri) is asyncio.current_task():
                self.pending.pop(uri, None)


def safe(default: Any = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """A request handler that answers `default` (and logs) instead of failing on a bug."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except Exception:  # noqa: BLE001
                log.exception("%s failed", fn.__name__)
                return default

        return run

    return wrap


def make_server(debounce_s: float = 0.3) -> NetspecServer:
    server = NetspecServer(debounce_s)

    @server.feature(types.INITIALIZED)
    def initialized(ls: NetspecServer, params: types.InitializedParams) -> None:
        caps = ls.client_capabilities
        td = caps.text_document if caps is not None else None
        item = td.completion.completion_item if td is not None and td.completion is not None else None
        ls.snippets = bool(item is not None and item.snippet_support)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: NetspecServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0, read_data=True)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: NetspecServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, ls.debounce_s, read_data=False)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: NetspecServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0, read_data=True)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: NetspecServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        task = ls.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        with ls.lock:
            ls.analyses.pop(uri, None)
        ls.data_seconds.pop(uri, None)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @safe()
    def hover(ls: NetspecServer, params: types.HoverParams) -> types.Hover | None:
        a = ls.analysis(params.text_document.uri)
        line, col = ls.coords(a).from_client(params.position)
        text = features.hover(a, line, col)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=[":", "(", ",", "["]))
    @safe(types.CompletionList(is_incomplete=False, items=[]))
    def completion(ls: NetspecServer, params: types.CompletionParams) -> types.CompletionList:
        a = ls.analysis(params.text_document.uri)
        line, col = ls.coords(a).from_client(params.position)
        return types.CompletionList(is_incomplete=False, items=complete(a, line, col, ls.snippets))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @safe()
    def definition(ls: NetspecServer, params: types.DefinitionParams) -> types.Location | None:
        a = ls.analysis(params.text_document.uri)
        line, col = ls.coords(a).from_client(params.position)
        span = features.definition(a, line, col)
        if span is None:
            return None
        coords = ls.coords(a) if span.file == a.file else features.Coords.of_file(span.file,
                                                                                  ls.workspace.position_codec)
        return types.Location(uri=features.uri_of(span.file), range=coords.range(span))

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @safe([])
    def symbols(ls: NetspecServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        a = ls.analysis(params.text_document.uri)
        return features.symbols(a, ls.coords(a))

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    @safe()
    def formatting(ls: NetspecServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        a = ls.analysis(params.text_document.uri)
        return features.formatting(a, ls.coords(a))

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    @safe([])
    def inlay_hints(ls: NetspecServer, params: types.InlayHintParams) -> list[types.InlayHint]:
        a = ls.analysis(params.text_document.uri)
        coords = ls.coords(a)
        first, _ = coords.from_client(params.range.start)
        last, _ = coords.from_client(params.range.end)
        return features.inlay_hints(a, coords, first, last)

    return server


def serve(debounce_s: float = 0.3) -> None:
    """Speak LSP on stdin/stdout until the client says exit. Anything else printed (by
    netspec or a library) goes to stderr: stdout belongs to the protocol."""
    logging.basicConfig(level=os.environ.get("NETSPEC_LSP_LOG", "WARNING"), stream=sys.stderr,
                        format="netspec lsp: %(levelname)s: %(message)s")
    rpc_in, rpc_out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    make_server(debounce_s).start_io(rpc_in, rpc_out)
