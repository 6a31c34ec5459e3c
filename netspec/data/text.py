"""Text columns: a tokenizer learned from the training split, texts as padded token ids.

In: the cells of a CSV's text columns (``csv(..., text="review")``), the data section's
`tokenizer:` (``words(...)``, ``chars(...)``, ``bpe(vocab_size=...)``) and `max_len:`. Out: a
Hugging Face ``tokenizers`` Tokenizer trained on the training rows only (its JSON travels in the
run folder, the checkpoint and the ONNX metadata), and texts as token ids: int32 [texts, steps],
right-padded with 0, one row per text, truncated to `max_len`.

The ids (docs/language.md, "Text"): 0 is padding (`[PAD]`), 1 the unknown token (`[UNK]`), 2
the separator (`[SEP]`) put between the columns of a sample when there are several; real tokens
follow. A special token's text inside a cell ("[PAD]") is an unknown word, never padding. The
normalisation is NFKC, then lower case unless `lowercase=false`; `words` and `bpe` split on
whitespace and punctuation, `chars` keeps every character (spaces included).

Training the tokenizer is deterministic; its result is cached under netspec's cache folder,
keyed by the settings and the training texts themselves, so `netspec check` learns the
vocabulary size (the `vocab_size` constant) once per data change. Imports no torch; the
ejected program copies ``new_tokenizer``, ``train_tokenizer`` and ``encode_texts``.

    tokenizer = train_tokenizer(texts, "words", lowercase=True, min_freq=2, size=None, columns=1)
    ids, lengths = encode_texts(tokenizer, [texts], max_len=128)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PAD = "[PAD]"  # id 0
UNK = "[UNK]"  # id 1
SEP = "[SEP]"  # id 2, between the text columns of a sample
UNK_ID = 1
SEP_ID = 2
MAX_TEXT_CHARS = 1 << 20  # a longer cell is refused: split long documents first
CACHE_FORMAT = 1


def special_tokens(columns: int) -> list[str]:
    """The special tokens, in id order: padding, unknown, and a separator when several
    text columns make one sample."""
    return [PAD, UNK, SEP] if columns > 1 else [PAD, UNK]


def new_tokenizer(kind: str, lowercase: bool) -> Any:
    """An untrained tokenizer: `words` (whitespace and punctuation split, one id per word),
    `chars` (one id per character) or `bpe` (byte-pair merges of characters within words)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    model = models.BPE(unk_token=UNK) if kind == "bpe" else models.WordLevel(unk_token=UNK)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])])
    if kind == "chars":
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


def train_tokenizer(texts: Sequence[str], kind: str, lowercase: bool, min_freq: int, size: int | None,
                    columns: int) -> Any:
    """A tokenizer trained on `texts` (the training split's cells, every text column's).
    `size`: at most this many tokens, special ones included (None: every token seen at least
    `min_freq` times)."""
    from tokenizers import trainers

    tokenizer = new_tokenizer(kind, lowercase)
    special = special_tokens(columns)
    trainer: Any
    if kind == "bpe":
        trainer = trainers.BpeTrainer(vocab_size=size or 8000, min_frequency=min_freq, special_tokens=special,
                                      show_progress=False)
    else:
        trainer = trainers.WordLevelTrainer(vocab_size=size or 1 << 30, min_frequency=min_freq,
                                            special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def encode_texts(tokenizer: Any, columns: Sequence[Sequence[str]],
                 max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (ids int32 [texts, steps] right-padded with 0 and cut at `max_len`, every
    text's length in tokens before the cut). `columns`: one list of cells per text column;
    a sample's columns are joined with the separator token. At least one step wide (an empty
    text is one padding step)."""
    special = len(tokenizer.get_added_tokens_decoder())
    parts = []
    for cells in columns:
        rows = [e.ids for e in tokenizer.encode_batch_fast(list(cells))]
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(counts.sum()))
        ids[(ids < special) & (ids != UNK_ID)] = UNK_ID  # "[PAD]" written in a text is a word, never padding
        parts.append((ids, counts))
    if len(parts) == 1:
        flat, lengths = parts[0]
    else:  # column 1, [SEP], column 2, ...
        pieces = [np.split(ids, np.cumsum(counts)[:-1]) for ids, counts in parts]
        sep = np.array([SEP_ID], dtype=np.int64)
        joined = [np.concatenate([x for j, p in enumerate(row) for x in ((sep, p) if j else (p,))])
                  for row in zip(*pieces, strict=True)]
        lengths = np.fromiter((len(r) for r in joined), dtype=np.int64, count=len(joined))
        flat = np.concatenate(joined) if joined else np.zeros(0, np.int64)
    longest = int(lengths.max()) if len(lengths) else 0
    width = max(1, min(longest, max_len) if max_len is not None else longest)
    kept = np.minimum(lengths, width)
    out = np.zeros((len(lengths), width), dtype=np.int32)
    steps = np.arange(width)
    inside = steps[None, :] < kept[:, None]
    offsets = np.cumsum(lengths) - lengths
    out[inside] = flat[(offsets[:, None] + steps[None, :])[inside]]
    return out, lengths


# ---------------------------------------------------------------- settings, facts, the cache


@dataclass(frozen=True)
class TokenizerSettings:
    """The `tokenizer:` of a data section: its kind and arguments (catalogue TOKENIZERS)."""

    kind: str = "words"  # words | chars | bpe
    lowercase: bool = True
    min_freq: int = 1
    size: int | None = None  # words/chars: max_size; bpe: vocab_size

    @classmethod
    def from_call(cls, name: str, kwargs: dict) -> TokenizerSettings:
        size = kwargs.get("vocab_size") if name == "bpe" else kwargs.get("max_size")
        return cls(name, bool(kwargs.get("lowercase", True)), int(kwargs.get("min_freq", 1)),
                   None if size is None else int(size))

    def describe(self) -> str:
        args = [f"lowercase={'true' if self.lowercase else 'false'}", f"min_freq={self.min_freq}"]
        if self.size is not None:
            args.append(f"{'vocab_size' if self.kind == 'bpe' else 'max_size'}={self.size}")
        return f"{self.kind}({', '.join(args)})"


@dataclass
class Vocabulary:
    """A trained tokenizer and what check and `netspec data` say about it."""

    tokenizer_json: str
    vocab_size: int
    longest: int  # tokens of the longest training text (before max_len)
    longest_index: int  # its position among the training texts
    lengths: list = field(default_factory=list)  # every training text's length in tokens (not cached)

    def tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        return Tokenizer.from_str(self.tokenizer_json)


def _cache_key(texts: Sequence[str], settings: TokenizerSettings, columns: int) -> str:
    import tokenizers

    h = hashlib.sha256(json.dumps([CACHE_FORMAT, tokenizers.__version__, settings.kind, settings.lowercase,
                                   settings.min_freq, settings.size, columns, len(texts)]).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _cache_file(key: str) -> Path:
    from netspec.data.datasets import cache_dir

    return cache_dir() / "tokenizers" / f"{key}.json"


def learn_vocabulary(columns: Sequence[Sequence[str]], settings: TokenizerSettings) -> Vocabulary:
    """The tokenizer of the training texts `columns` (one list of cells per text column), from
    the cache when these texts and settings were seen before, else trained (and cached)."""
    texts = [t for cells in columns for t in cells]
    key = _cache_key(texts, settings, len(columns))
    path = _cache_file(key)
    if os.environ.get("NETSPEC_TOKENIZER_CACHE", "1") != "0":
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("format") == CACHE_FORMAT and cached.get("key") == key:
                return Vocabulary(cached["tokenizer"], int(cached["vocab_size"]), int(cached["longest"]),
                                  int(cached["longest_index"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    tokenizer = train_tokenizer(texts, settings.kind, settings.lowercase, settings.min_freq, settings.size,
                                len(columns))
    tokenizer_json = tokenizer.to_str()
    _, lengths = encode_texts(tokenizer, columns, 1)
    longest_index = int(np.argmax(lengths)) if len(lengths) else 0
    vocab = Vocabulary(tokenizer_json, tokenizer.get_vocab_size(), int(lengths.max()) if len(lengths) else 0,
                       longest_index, lengths.tolist())
    try:
        from netspec.util import atomic_write_text, ensure_folder

        ensure_folder(path.parent)
        atomic_write_text(path, json.dumps({"format": CACHE_FORMAT, "key": key, "tokenizer": tokenizer_json,
                                            "vocab_size": vocab.vocab_size, "longest": vocab.longest,
                                            "longest_index": longest_index}))
    except OSError:
        pass  # a read-only cache folder: learnt again next time
    return vocab


def text_cells(table: Any, names: Sequence[str], rows: np.ndarray | None = None) -> list[list[str]]:
    """The cells of text columns `names` of a CsvTable (rows `rows`, default all)."""
    if rows is None:
        return [list(table.columns[n]) for n in names]
    return [[table.columns[n][i] for i in rows] for n in names]


def unknown_rate(ids: np.ndarray) -> float:
    """The share of a split's tokens (padding excluded) that are the unknown token."""
    tokens = int((ids != 0).sum())
    return float((ids == UNK_ID).sum()) / tokens if tokens else 0.0


def length_histogram(lengths: Sequence[int], max_len: int | None, bins: int = 10, width: int = 40) -> list[str]:
    """Text lengths in tokens as lines of a bar chart (`netspec data`)."""
    a = np.asarray(lengths, dtype=np.int64)
    if not len(a):
        return []
    top = int(a.max())
    edges = np.unique(np.linspace(0, top + 1, bins + 1).round().astype(np.int64))
    counts, _ = np.histogram(a, bins=edges)
    scale = width / max(int(counts.max()), 1)
    lines = []
    for lo, hi, n in zip(edges[:-1], edges[1:], counts):
        cut = "" if max_len is None or hi - 1 <= max_len or not n else \
            " (cut to max_len)" if lo > max_len else f" (those over {max_len} cut)"
        label = f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}"
        lines.append(f"{label:>11} tokens | {'#' * int(round(n * scale)):<{width}} {n:,}{cut}")
    return lines
