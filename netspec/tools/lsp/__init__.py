"""netspec's language server: `netspec lsp` (stdio, pygls 2.x).

    document.py    a document's text -> Analysis (parser + checker, recovering from syntax errors)
    features.py    diagnostics, hover, definition, symbols, inlay hints, formatting from an Analysis
    completion.py  completion from an Analysis and the catalogue
    server.py      the pygls server: documents, debounced checks, request handlers

Editors: docs/editors.md and editors/ (VS Code, Neovim, Helix).
"""
