"""File helpers shared by every writer of results: atomic replacement, content fingerprints.

A floor module (standard library only), importable from every stage of the package: the
HOG-SVM detector saves its models with it, as the dataset, COCO and training writers save theirs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
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


def fsync_dir(folder: PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: errno values of a full disk, an exhausted quota or a read-only filesystem: their OSError
#: re-raised with the target path (:func:`naming_target`), which the system's message lacks.
_OUT_OF_SPACE = frozenset(
    code for code in (getattr(errno, name, None) for name in ("ENOSPC", "EDQUOT", "EROFS")) if code is not None
)


def naming_target(error: BaseException, path: PathLike) -> BaseException:
    """``error``, or where it is an :class:`OSError` of a full disk, an exhausted quota or a
    read-only filesystem (ENOSPC, EDQUOT, EROFS) that does not name ``path``, a new one of the
    same errno that does ("[Errno 28] No space left on device: 'PATH'"), for ``raise ... from``."""
    code = error.errno if isinstance(error, OSError) else None
    if code is not None and code in _OUT_OF_SPACE and os.fspath(path) not in str(error):
        return OSError(code, getattr(error, "strerror", None) or os.strerror(code), os.fspath(path))
    return error


# --- Test-only fault hook -------------------------------------------------------------------
# Never set these outside tests; they exist so that tests/test_faults.py can kill a run at each
# of its renames and check what a rerun makes of what it left.
#   FLICKERMINE_FAULT_COUNT_FILE=PATH  each atomic rename (commit_replacement, and the keep_as
#                                      rename of replaced_atomically) first appends a line
#                                      "<pid> <target path>" to PATH: how many renames a run does.
#   FLICKERMINE_FAULT_AT_RENAME=N      the process kills itself (SIGKILL; os._exit(137) where
#                                      there is none) just before its N-th rename (N from 1,
#                                      counted in this process only).
_FAULT_COUNT_FILE = "FLICKERMINE_FAULT_COUNT_FILE"
_FAULT_AT_RENAME = "FLICKERMINE_FAULT_AT_RENAME"
_renames_done = 0


def _before_rename(target: PathLike) -> None:
    """The test-only fault hook (see above); does nothing unless its variables are set."""
    count_file, at = os.environ.get(_FAULT_COUNT_FILE), os.environ.get(_FAULT_AT_RENAME)
    if not count_file and not at:
        return
    global _renames_done
    _renames_done += 1
    if count_file:
        with open(count_file, "a", encoding="utf-8") as stream:
            stream.write(f"{os.getpid()} {os.fspath(target)}\n")
    if at and _renames_done == int(at):
        import signal

        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)


def commit_replacement(temporary: PathLike, path: PathLike) -> None:
    """The one way a finished temporary file takes ``path``'s place: flush it to disk, rename it
    over ``path`` (one atomic step), flush the folder's entry. For writers that fill a temporary
    file themselves (a hard link, a reflink copy) instead of through :func:`replaced_atomically`.
    A full disk, quota or read-only filesystem is reported naming ``path``."""
    try:
        _fsync_file(temporary)
        _before_rename(path)
        os.replace(temporary, path)
    except OSError as error:
        raise naming_target(error, path) from error
    fsync_dir(Path(os.fspath(path)).parent)


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new, empty temporary file in ``path``'s folder: ``.NAME.<random>.tmp``, created with
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` (by :func:`tempfile.mkstemp`), so a planted file or link of
    that name is never opened, and two writers of one ``path`` never share one."""
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)


#: every temporary file of this module is named ``.<target name>.<random>.tmp``
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temporary files (``.<target>.<random>.tmp``)."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temporaries(folder: PathLike, of: Optional[str] = None) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``; with ``of``, only those of the target
    named ``of``) that writers killed outright left in ``folder`` (not below it); return them.
    Call it only under the :func:`output_lock` of what they were written for, when no live
    writer can own one."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if of is not None and not entry.name.startswith(f".{of}."):
            continue
        if is_temporary_name(entry.name) and not entry.is_dir(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


@contextlib.contextmanager
def replaced_atomically(path: Path, keep_as: Optional[Path] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Readers see the old file or the new one, never half of one; on any error the temporary file
    is removed (or, with ``keep_as``, renamed to it: what was written so far) and ``path`` is
    untouched. The file and then its folder are flushed to disk before and after the rename, so a
    crash leaves the old file or the whole new one. The new file gets the permissions a plain
    ``open()`` would give it (``0o666`` less the umask): ``mkstemp``'s owner-only mode would hide
    results from the other users of a shared folder or cluster.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, temporary = _temporary_beside(path)
    except OSError as error:
        raise naming_target(error, path) from error
    os.close(fd)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        commit_replacement(temporary, path)
    except BaseException as error:
        if keep_as is not None and os.path.exists(temporary):
            with contextlib.suppress(OSError):
                os.chmod(temporary, 0o666 & ~_umask())
                _before_rename(keep_as)
                os.replace(temporary, keep_as)  # replaces a link of that name, never its target
        Path(temporary).unlink(missing_ok=True)
        named = naming_target(error, path)  # a full disk while the caller wrote the temporary file
        if named is not error:
            raise named from error
        raise


class OutputBusyError(OSError):
    """Another process holds the lock of an output (a dataset folder, a CSV file)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "output in use"


@contextlib.contextmanager
def output_lock(lock_file: PathLike, what: PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created if needed, never deleted) for the block;
    if another process holds it, raise :class:`OutputBusyError` at once naming ``what``.

    ``fcntl.flock``: the kernel drops the lock when its holder exits, however it dies, so a
    killed run never leaves a stale lock. Where ``fcntl`` is missing (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_file = Path(lock_file)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock_file, flags, 0o666)
    except OSError as error:
        raise OSError(error.errno, f"{lock_file}: cannot open the lock file of {what}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(
                f"{what} is in use by another flickermine run (lock {lock_file}); wait for it to finish or write elsewhere"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def locked_output(path: PathLike, keep_as: Optional[Path] = None) -> Iterator[Path]:
    """One writer of the file ``path`` at a time, atomically: hold ``.NAME.lock`` beside it
    (:func:`output_lock`; a second writer fails at once), remove the temporary files killed
    writers of ``path`` left, and yield a new temporary file that replaces ``path`` on success
    (:func:`replaced_atomically`; on error it is removed, or renamed to ``keep_as``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path.parent / f".{path.name}.lock", path):
        remove_stale_temporaries(path.parent, of=path.name)
        with replaced_atomically(path, keep_as=keep_as) as temporary:
            yield temporary


def video_fingerprint(path: PathLike) -> dict:
    """What identifies a video's content cheaply: size, modification time and the SHA-256 of its
    first and last MiB; of an image folder, the same over its files (count, total size, newest
    time, and the hash of their names and sizes with the first MiB of the first and the last MiB
    of the last). Compared on resume: a changed video is never taken as done."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file()), key=lambda p: p.name)
        stats = [p.stat() for p in files]
        for p, st in zip(files, stats):
            digest.update(f"{p.name}\0{st.st_size}\n".encode())
        if files:
            digest.update(_head(files[0]))
            digest.update(_tail(files[-1]))
        return {
            "files": len(files),
            "size": sum(st.st_size for st in stats),
            "mtime_ns": max((st.st_mtime_ns for st in stats), default=0),
            "head_tail_sha256": digest.hexdigest(),
        }
    st = path.stat()
    digest.update(_head(path))
    digest.update(_tail(path))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": digest.hexdigest()}


_MIB = 1 << 20


def _head(path: Path) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(_MIB)


def _tail(path: Path) -> bytes:
    with open(path, "rb") as stream:
        stream.seek(0, os.SEEK_END)
        stream.seek(max(0, stream.tell() - _MIB))
        return stream.read()


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
        try:
            fd, tmp = _temporary_beside(self.path)
        except OSError as exc:
            raise OSError(exc.errno, f"{self.path}: cannot create a temporary file beside it: {exc.strerror}") from exc
        self._tmp = Path(tmp)
        os.chmod(fd, 0o666 & ~_umask())  # what open() would give, not mkstemp's 0600
        self._handle: Optional[TextIO] = os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def _finish(self) -> None:
        """Write what is still pending (subclasses)."""

    def close(self) -> None:
        """Finish the file and rename it over ``path``."""
        if self._handle is None:
            return
        try:
            self._finish()
        except BaseException as error:
            self.abort()
            named = naming_target(error, self.path)
            if named is not error:
                raise named from error
            raise
        handle, self._handle = self._handle, None
        try:
            handle.flush()
            handle.close()
            commit_replacement(self._tmp, self.path)
        except BaseException as error:
            with contextlib.suppress(OSError):
                handle.close()
            self._remove_tmp()
            named = naming_target(error, self.path)
            if named is not error:
                raise named from error
            raise

    def abort(self) -> None:
        """Discard what was written; ``path`` is left as it was."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        with contextlib.suppress(OSError):  # flushing what is buffered can fail again (a full disk)
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
            named = naming_target(exc, self.path)  # a full disk while the caller wrote lines
            if named is not exc:
                raise named from exc
