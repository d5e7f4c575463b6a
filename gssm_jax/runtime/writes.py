"""A failed write of a run's files (a full disk, a quota, a read-only or forbidden folder) as one
error naming the path and the cause, which `gssm_jax.main` reports with EXIT_WRITE_FAILED.

Orbax reports its own failed writes as exceptions of its worker threads whose text carries the
operating system's message, so the cause is also recognised in an exception's text.
"""

from __future__ import annotations

import errno
import re

# errno -> (what the line says, the errno's name)
CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
_TEXTS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
    "Operation not permitted": errno.EPERM,
}
_CODE = re.compile(r"os_error_code='?(\d+)")


class WriteError(OSError):
    """A write of `path` failed for `cause` (one of CAUSES, with its errno name)."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"cannot write {path}: {cause}")
        self.path = path
        self.cause = cause


def _describe(code: int) -> str:
    return f"{CAUSES[code]} ({errno.errorcode[code]})"


def cause_of(error: BaseException) -> str | None:
    """'no space left on device (ENOSPC)' and the like when `error` (or an exception it was raised
    from) is a failed write for one of CAUSES; None for any other error."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, WriteError):
            return e.cause
        if isinstance(e, OSError) and e.errno in CAUSES:
            return _describe(e.errno)
        text = str(e)
        match = _CODE.search(text)
        if match and int(match[1]) in CAUSES:
            return _describe(int(match[1]))
        for needle, code in _TEXTS.items():
            if needle in text:
                return _describe(code)
        e = e.__cause__ or e.__context__
    return None


def path_of(error: BaseException, default: str) -> str:
    """The file an OSError names, else `default`."""
    name = getattr(error, "filename", None)
    return str(name) if name else default
