"""Tokenizers of text sources: bytes (the default) or a SentencePiece model file.

`ByteTokenizer`: token b < 256 is the byte b of the UTF-8 text, 256 is BOS and 257 EOS (258
tokens). `SentencePieceTokenizer` reads a `.model` file the user already has (`pip install
sentencepiece`; nothing is downloaded) and uses its own BOS/EOS, or appends them after its pieces
where the model has none. Both decode model output to text with invalid UTF-8 shown as U+FFFD.
`token_bytes_V[t]` is how many bytes of text token t stands for (specials: 0), for bits per byte.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from gssm_jax.config.errors import ConfigError

BYTES = "bytes"
SPECIAL_TEXT = {"bos": "<|bos|>", "eos": "<|eos|>"}


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, BOS = 256, EOS = 257."""

    name = BYTES
    vocab_size = 258
    bos_id = 256
    eos_id = 257

    def __init__(self) -> None:
        self.token_bytes_V = np.array([1] * 256 + [0, 0], np.int64)

    def encode(self, text: str) -> np.ndarray:
        """The bytes of `text` as int32 tokens, no specials."""
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

    def _decode_plain(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def decode(self, ids: Sequence[int], specials: bool = False) -> str:
        """Text of tokens `ids`; specials dropped, or shown as <|bos|> / <|eos|>."""
        return _decode(self, ids, specials)

    def describe(self) -> str:
        return "bytes (256 byte values + BOS 256 + EOS 257 = 258 tokens)"


class SentencePieceTokenizer:
    """A SentencePiece model file; BOS/EOS are its own, else the two ids after its pieces."""

    def __init__(self, path: str) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise ConfigError(
                f"config data.text.tokenizer={path!r}: a SentencePiece model needs the "
                "sentencepiece package (pip install sentencepiece, or pip install -e '.[text]')"
            ) from None
        if not os.path.isfile(path):
            raise ConfigError(f"config data.text.tokenizer={path!r}: no such file")
        try:
            self.sp = sp = sentencepiece.SentencePieceProcessor(model_file=path)
        except (OSError, RuntimeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"config data.text.tokenizer={path!r}: not a SentencePiece model ({first})"
            ) from None
        self.name = path
        self.pieces = n = sp.get_piece_size()
        self.bos_id = sp.bos_id() if sp.bos_id() >= 0 else n
        self.eos_id = sp.eos_id() if sp.eos_id() >= 0 else n + (sp.bos_id() < 0)
        self.vocab_size = max(n, self.bos_id + 1, self.eos_id + 1)
        bytes_V = np.zeros(self.vocab_size, np.int64)
        for i in range(n):
            if sp.is_byte(i):
                bytes_V[i] = 1
            elif not (sp.is_control(i) or sp.is_unknown(i)):
                bytes_V[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        self.token_bytes_V = bytes_V

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.sp.encode(text), np.int32)

    def _decode_plain(self, ids: Sequence[int]) -> str:
        keep = [int(i) for i in ids if 0 <= i < self.pieces and not self.sp.is_control(int(i))]
        return self.sp.decode(keep)

    def decode(self, ids: Sequence[int], specials: bool = False) -> str:
        return _decode(self, ids, specials)

    def describe(self) -> str:
        return (
            f"SentencePiece {self.name} ({self.pieces} pieces, BOS {self.bos_id}, "
            f"EOS {self.eos_id}: {self.vocab_size} tokens)"
        )


Tokenizer = ByteTokenizer | SentencePieceTokenizer


def _decode(tok: Tokenizer, ids: Sequence[int], specials: bool) -> str:
    """Text of `ids`; with `specials`, each BOS/EOS shown in place between decoded stretches."""
    ids = [int(i) for i in ids]
    if not specials:
        return tok._decode_plain(ids)
    marks = {tok.bos_id: SPECIAL_TEXT["bos"], tok.eos_id: SPECIAL_TEXT["eos"]}
    out: list[str] = []
    stretch: list[int] = []
    for i in ids:
        if i in marks:
            out += [tok._decode_plain(stretch), marks[i]]
            stretch = []
        else:
            stretch.append(i)
    return "".join(out + [tok._decode_plain(stretch)])


def load_tokenizer(spec: str) -> Tokenizer:
    """`"bytes"`, or the SentencePiece model file at path `spec`."""
    return ByteTokenizer() if spec == BYTES else SentencePieceTokenizer(spec)


def token_stream(tok: Tokenizer, documents: Sequence[str]) -> np.ndarray:
    """The documents in order, each as BOS, its tokens, EOS, in one int32 array."""
    bos, eos = np.array([tok.bos_id], np.int32), np.array([tok.eos_id], np.int32)
    parts = []
    for text in documents:
        parts += [bos, tok.encode(text), eos]
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)
