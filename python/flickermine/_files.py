"""File helpers shared by every writer of results: atomic replacement, content fingerprints.

A floor module (standard library only), importable from every stage of the package: the
HOG-SVM detector saves its models with it, as the dataset, COCO and training writers save theirs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO, Union

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    # Linux reports it; elsewhere os.umask can only read it by setting it (put straight back;
    # a file another thread creates in between would get 022).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Readers see the old file or the new one, never half of one; on any error the temporary file
    is removed and ``path`` is untouched. The new file gets the permissions a plain ``open()``
    would give it (``0o666`` less the umask): ``mkstemp``'s owner-only mode would hide results
    from the other users of a shared folder or cluster.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex): what a resumed run checks its inputs against."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temp file in the same folder and rename it over ``path``."""
    with replaced_atomically(path) as temporary, open(temporary, "w") as stream:
        json.dump(payload, stream, indent=1)
        stream.write("\n")


class AtomicWriter:
    """Temporary file beside ``path``, renamed over it on :meth:`close`, deleted on :meth:`abort`."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(os.fspath(path))
        self.count = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except OSError as exc:
            raise OSError(exc.errno, f"{self.path}: cannot create a temporary file beside it: {exc.strerror}") from exc
        self._handle: Optional[TextIO] = os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def _finish(self) -> None:
        """Write what is still pending (subclasses)."""

    def close(self) -> None:
        """Finish the file and rename it over ``path``."""
        if self._handle is None:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        handle, self._handle = self._handle, None
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            handle.close()
            self._remove_tmp()
            raise

    def abort(self) -> None:
        """Discard what was written; ``path`` is left as it was."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        handle.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
