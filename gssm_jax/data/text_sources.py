"""Documents of a text source: a UTF-8 file, a JSONL file, or a folder of them.

A plain file is one document. A JSONL file (name ending `.jsonl`) is one document per line, the
string under `field` of that line's JSON object; blank lines and empty strings are skipped. A
folder is every `*.txt` and `*.jsonl` file below it (recursively, hidden names skipped), in the
order of their paths relative to the folder, so a source reads the same on every machine. Empty
documents are skipped; a source with no text at all is an error.
"""

from __future__ import annotations

import json
import os

from gssm_jax.config.errors import ConfigError

TEXT_SUFFIXES = (".txt", ".jsonl")


class TextDataError(ConfigError):
    """A text source that cannot be read: missing, empty, not UTF-8, or a bad JSONL line."""


def source_files(path: str) -> list[str]:
    """The files of source `path`: itself, or the text files below the folder, sorted."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise TextDataError(f"text source {path}: no such file or folder")
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.join(root, n)
            for n in names
            if n.endswith(TEXT_SUFFIXES) and not n.startswith(".")
        ]
    if not found:
        raise TextDataError(f"text source {path}: folder holds no *.txt or *.jsonl file")
    return sorted(found, key=lambda f: os.path.relpath(f, path).split(os.sep))


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextDataError(
            f"{where}: not UTF-8 (byte {e.start}: {data[e.start : e.start + 1]!r})"
        ) from None


def _jsonl_documents(path: str, field: str) -> list[str]:
    documents = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"text source {path}, line {number}"
            line = _utf8(raw, where).strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise TextDataError(f"{where}: not JSON ({e.msg}, column {e.colno})") from None
            if not isinstance(record, dict) or field not in record:
                raise TextDataError(f"{where}: no field {field!r} (config data.text.jsonl_field)")
            text = record[field]
            if not isinstance(text, str):
                raise TextDataError(
                    f"{where}: field {field!r} is a {type(text).__name__}, not a string"
                )
            if text:
                documents.append(text)
    return documents


def file_documents(path: str, jsonl_field: str = "text") -> list[str]:
    """The documents of one file: one per JSONL line if it ends `.jsonl`, else the whole file."""
    if path.endswith(".jsonl"):
        return _jsonl_documents(path, jsonl_field)
    with open(path, "rb") as f:
        text = _utf8(f.read(), f"text source {path}")
    return [text] if text else []


def read_documents(path: str, jsonl_field: str = "text") -> list[str]:
    """Every non-empty document of source `path` in order; TextDataError if there is none."""
    files = source_files(path)
    documents = [d for f in files for d in file_documents(f, jsonl_field)]
    if not documents:
        what = "empty file" if files == [path] else f"its {len(files)} files are empty"
        raise TextDataError(f"text source {path}: no text ({what})")
    return documents
