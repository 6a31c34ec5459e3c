"""Regenerate netspec/syntax/parse_tables.py (the LALR tables of grammar/netspec.lark, as plain
Python data) after editing the grammar. tests/test_parse_tables.py fails while it is stale.

    .venv/bin/python scripts/write_parse_tables.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from netspec.syntax.parser import write_tables  # noqa: E402

if __name__ == "__main__":
    print(f"wrote {write_tables()}")
