"""A standard-library WordPiece tokenizer: BERT uncased, as the text encoder was trained with.

The same steps, in the same order, as the ``BertNormalizer`` + ``BertPreTokenizer`` + ``WordPiece``
pipeline of Hugging Face ``tokenizers`` (``tokenizer.json`` of all-MiniLM-L6-v2), so a device needs
no ``tokenizers`` package (``tests/shared/test_wordpiece.py`` compares the ids with a reference list):

1. **Clean**: drop NUL, U+FFFD and control/format characters (Unicode ``C*``, except tab and line
   breaks); every Unicode ``White_Space`` character becomes a space.
2. **CJK**: a space either side of every CJK ideograph, so each is its own word.
3. **Accents and case**: NFD, drop non-spacing marks (``Mn``), then lower-case.
4. **Words**: split on whitespace; every punctuation character (ASCII punctuation or Unicode ``P*``)
   is a word of its own.
5. **WordPiece**: the greedy longest match from the vocabulary, continuation pieces prefixed
   ``##``; a word that cannot be covered, or longer than 100 characters, is ``[UNK]``.
6. ``[CLS]`` + pieces + ``[SEP]``, truncated to ``max_len`` ids; a batch is padded with ``[PAD]``
   (id 0) to its longest row, with an attention mask of 1 on the real ids.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import numpy as np
from vane.shared.errors import VaneError

#: The characters Unicode gives the White_Space property (a space after cleaning).
_WHITE_SPACE = frozenset(
    "\t\n\r\x0b\x0c \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_KEEP_CONTROLS = frozenset("\t\n\r")
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
_ASCII_PUNCT = frozenset(chr(c) for r in ((33, 48), (58, 65), (91, 97), (123, 127)) for c in range(*r))
MAX_CHARS_PER_WORD = 100
_CACHE_LIMIT = 200_000


class TokenizerError(VaneError):
    """A vocabulary that cannot be read, or a bad argument to the tokenizer."""


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize(text: str) -> str:
    """Steps 1-3: cleaned, CJK spaced, accents stripped, lower case."""
    out: list[str] = []
    for ch in text:
        if ch in _WHITE_SPACE:
            out.append(" ")
            continue
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (ch not in _KEEP_CONTROLS and unicodedata.category(ch).startswith("C")):
            continue
        if cp >= 0x3400 and _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    cleaned = "".join(out)
    if not cleaned.isascii():
        cleaned = "".join(c for c in unicodedata.normalize("NFD", cleaned) if unicodedata.category(c) != "Mn")
    return cleaned.lower()


def split_words(text: str) -> list[str]:
    """Step 4 on normalised text: whitespace-separated words, each punctuation character alone."""
    words: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():
            words.append(chunk)
            continue
        start = 0
        for i, ch in enumerate(chunk):
            if _is_punct(ch):
                if i > start:
                    words.append(chunk[start:i])
                words.append(ch)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


class WordPiece:
    """A BERT uncased WordPiece tokenizer over a ``vocab.txt`` (one token a line, the id its line).

    Parameters
    ----------
    vocab : sequence of str
        The tokens in id order.
    max_len : int, default 128
        The most ids of one text, ``[CLS]`` and ``[SEP]`` included (at least 2).
    """

    def __init__(self, vocab: Sequence[str], max_len: int = 128) -> None:
        if int(max_len) < 2:
            raise TokenizerError(f"max_len is {max_len}; it must be at least 2 (room for [CLS] and [SEP])")
        self.max_len = int(max_len)
        self.vocab: dict[str, int] = {}
        for i, token in enumerate(vocab):
            self.vocab.setdefault(token, i)
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in self.vocab]
        if missing:
            raise TokenizerError(f"the vocabulary ({len(self.vocab)} tokens) lacks {', '.join(missing)}")
        self.pad_id, self.unk_id = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self._cache: dict[str, tuple[int, ...]] = {}
        self.sha256 = hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, max_len: int = 128) -> WordPiece:
        """A tokenizer from the bytes of a ``vocab.txt`` (UTF-8, one token a line)."""
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"vocab.txt is not UTF-8 ({exc})") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls([line.rstrip("\r") for line in lines], max_len)

    def __len__(self) -> int:
        return len(self.vocab)

    def word_ids(self, word: str) -> tuple[int, ...]:
        """Step 5: the ids of one word (``(unk_id,)`` when it cannot be covered)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        ids: list[int] = []
        if len(word) > MAX_CHARS_PER_WORD:
            ids = [self.unk_id]
        else:
            start, n, vocab = 0, len(word), self.vocab
            while start < n:
                end, found = n, -1
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    found = vocab.get(piece, -1)
                    if found >= 0:
                        break
                    end -= 1
                if found < 0:
                    ids = [self.unk_id]
                    break
                ids.append(found)
                start = end
        result = tuple(ids)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = result
        return result

    def encode(self, text: str) -> list[int]:
        """The ids of one text: ``[CLS]`` + its pieces + ``[SEP]``, at most ``max_len`` of them."""
        if not isinstance(text, str):
            raise TokenizerError(f"text must be a str, got {type(text).__name__}")
        room = self.max_len - 2
        ids = [self.cls_id]
        for word in split_words(normalize(text)):
            ids.extend(self.word_ids(word))
            if len(ids) > room:
                break
        del ids[room + 1 :]
        ids.append(self.sep_id)
        return ids

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, int32 ``[B, L]`` padded to the longest text."""
        rows = [self.encode(t) for t in texts]
        length = max((len(r) for r in rows), default=2)
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(rows), length), dtype=np.int32)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask
