"""Quarantine without touching the acquisition folder: a record always, a sparse-aware copy only when configured.

The record is the results store's row (reason + fingerprint; a changed fingerprint retries the file). With
``quarantine = "copy"`` a *regular* file that lies inside the watched tree is also copied to ``state_dir/quarantine``
under a name derived from its origin (any bytes, any length), with a JSON record beside it. Links, FIFOs and
devices are never copied, nor anything outside the tree, nor data beyond ``max_bytes``; holes stay holes, so a
2 GB sparse file costs its few real blocks.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path

_CHUNK = 1 << 20
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def quarantine_copy(path: Path, origin: str, fingerprint: str | None, reason: str, *, folder: Path,
                    root: Path | None, max_bytes: int) -> str:
    """Copy ``path`` into ``folder`` if allowed; returns what was done, for the log ("copied to …" / "not copied: …")."""
    try:
        lst = os.lstat(path)
    except OSError as exc:
        return f"not copied: {exc.strerror or exc}"
    if not stat.S_ISREG(lst.st_mode):
        return "not copied: not a regular file (link, FIFO, device or folder)"
    if root is not None:
        real, root_real = os.path.realpath(path), os.path.realpath(root)
        if os.path.commonpath([root_real, real]) != root_real:
            return "not copied: outside the watched folder"
    key = hashlib.sha256(f"{origin}\0{fingerprint or ''}".encode("utf-8", "backslashreplace")).hexdigest()[:20]
    suffix = path.suffix if _SUFFIX.match(path.suffix) else ""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{key}{suffix}"
    try:
        copied = sparse_copy(path, target, max_bytes)
    except _TooLarge as exc:
        note = f"not copied: {exc}"
    except OSError as exc:
        target.unlink(missing_ok=True)
        note = f"not copied: {exc.strerror or exc}"
    else:
        note = f"copied to {target} ({copied} bytes of data)"
    record = {"origin": origin, "fingerprint": fingerprint, "reason": reason, "copy": note,
              "quarantined_at": datetime.now(timezone.utc).isoformat()}
    (folder / f"{key}.json").write_text(json.dumps(record, indent=1) + "\n")
    return note


class _TooLarge(Exception):
    pass


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges holding data (holes skipped where the filesystem says; else the whole file)."""
    extents: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            extents.append((start, end))
            pos = end
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after pos
            return extents
        return [(0, size)]  # SEEK_DATA unsupported here
    except AttributeError:  # platform without SEEK_DATA
        return [(0, size)]
    return extents


def sparse_copy(src: Path, dst: Path, max_bytes: int) -> int:
    """Copy the data of regular file ``src`` to ``dst`` keeping holes (also all-zero blocks); returns data bytes."""
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _TooLarge("not a regular file")
        extents = data_extents(fd, st.st_size)
        data = sum(end - start for start, end in extents)
        if data > max_bytes:
            raise _TooLarge(f"{data} bytes of data, more than limits.quarantine_copy_max_mb")
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            written = 0
            for start, end in extents:
                for off in range(start, end, _CHUNK):
                    block = os.pread(fd, min(_CHUNK, end - off), off)
                    if not block:
                        break
                    if block.count(0) != len(block):  # an all-zero block stays a hole
                        os.pwrite(out, block, off)
                        written += len(block)
            os.ftruncate(out, st.st_size)
            return written
        finally:
            os.close(out)
    finally:
        os.close(fd)
