"""Atomic file replacement: write a temporary file beside the target, fsync it, rename it over the target.

A process that dies at any moment (SIGKILL, power loss) leaves the old file or the new one, never a mix; what it
can leave is its temporary file, ``.<name>.<random>.tmp`` in the same folder, which ``remove_temp_files`` clears
(a resumed run calls it). A write that fails (a full disk: ENOSPC) removes its temporary file, leaves the target as
it was and raises ``WriteError`` whose one-line message names the file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_SUFFIX = ".tmp"


def _file_mode() -> int:
    """The mode ``open(path, 'w')`` would give a new file (mkstemp's own 0600 would hide runs from other users)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


class WriteError(OSError):
    """A file could not be written; the previous version of the file (if any) is unchanged."""


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a binary temp file in ``path``'s folder, fsync, rename over ``path``, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
        raise WriteError(e.errno, f"could not write {path} ({e.strerror or e}); {kept}") from e
    except BaseException:  # KeyboardInterrupt, or an error of ``write`` itself
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power loss
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``write_atomic`` of a text file (utf-8)."""
    data = text.encode()
    return write_atomic(path, lambda f: f.write(data))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_files(folder: str | Path) -> list[Path]:
    """The temporary files ``write_atomic`` may have left in ``folder`` (``.<name>.<random>.tmp``)."""
    folder = Path(folder)
    return sorted(f for f in folder.glob(f".*{TEMP_SUFFIX}") if f.is_file()) if folder.is_dir() else []


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files of writes that died in ``folder``; returns them."""
    removed = temp_files(folder)
    for f in removed:
        f.unlink(missing_ok=True)
    return removed
