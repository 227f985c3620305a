"""File-name rules shared by the directory and replay sources: include/exclude globs, natural name order.

Globs match case-insensitively (microscope software writes ``IMG_0001.TIF`` as often as ``img_0001.tif``). Include
globs look at the file name only; exclude globs look at every component below the root, so ``.*`` also hides files
inside hidden folders (``.thumbnails/x.png``) when watching recursively.

>>> name_matches("Frame_001.TIF", DEFAULT_INCLUDE, DEFAULT_EXCLUDE)
True
>>> name_matches("frame_001.tif.part", DEFAULT_INCLUDE, DEFAULT_EXCLUDE), name_matches(".frame.tif", DEFAULT_INCLUDE, DEFAULT_EXCLUDE)
(False, False)
>>> sorted(["f10.tif", "f9.tif", "f100.tif"], key=natural_key)
['f9.tif', 'f10.tif', 'f100.tif']

Symbolic links: a linked *file* is accepted only when it resolves to a regular file inside the watched tree
(:func:`resolves_inside`); linked *folders* are never descended into, so nothing outside the tree is read and no
link loop can multiply files. Folders are also deduplicated by (device, inode), which stops bind-mount loops.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_INCLUDE: tuple[str, ...] = ("*.tif", "*.tiff", "*.dm3", "*.dm4", "*.emd", "*.ser", "*.bcf", "*.mrc", "*.png")
DEFAULT_EXCLUDE: tuple[str, ...] = (".*", "*.tmp", "*.part", "~*")


def _any_match(name: str, patterns: Iterable[str]) -> bool:
    low = name.lower()
    return any(fnmatchcase(low, p.lower()) for p in patterns)


def name_matches(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """True when ``name`` matches one include glob and no exclude glob (case-insensitive)."""
    return _any_match(name, include) and not _any_match(name, exclude)


def relative_accepts(
    rel_parts: Sequence[str], include: Sequence[str], exclude: Sequence[str], *, recursive: bool
) -> bool:
    """Filter for a path given as its components below the watched root."""
    if not rel_parts or (not recursive and len(rel_parts) != 1):
        return False
    if any(_any_match(part, exclude) for part in rel_parts[:-1]):
        return False
    return name_matches(rel_parts[-1], include, exclude)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str | os.PathLike[str]) -> tuple:
    """Sort key putting ``f9`` before ``f10`` (case-insensitive, digits compared as numbers)."""
    s = os.fspath(name)
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _DIGITS.split(s) if t)


def resolves_inside(path: str | os.PathLike, root_real: str) -> bool:
    """True when ``path`` (link or not) resolves to a regular file inside ``root_real`` (an already resolved root)."""
    try:
        real = os.path.realpath(path, strict=True)
        if not stat.S_ISREG(os.stat(real).st_mode):
            return False
    except (OSError, RuntimeError, ValueError):  # dangling link, link loop (ELOOP), odd bytes
        return False
    return real == root_real or os.path.commonpath([root_real, real]) == root_real


def iter_files(
    root: Path, include: Sequence[str], exclude: Sequence[str], *, recursive: bool = False
) -> Iterator[Path]:
    """Matching regular files under ``root`` in natural name order (folders pruned by ``exclude``).

    Depth-first without recursion (any depth); linked folders are skipped, linked files kept only when they resolve
    inside ``root``; each real folder is visited once.
    """
    root_real = os.path.realpath(root)
    visited: set[tuple[int, int]] = set()
    stack: list[Path] = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                log.warning("%s: folder already visited under another name (bind mount loop?); skipped", folder)
                continue
            visited.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: natural_key(e.name))
        except OSError:  # vanished, no permission
            continue
        subdirs: list[Path] = []
        for entry in entries:
            try:
                if entry.is_symlink():
                    if name_matches(entry.name, include, exclude) and resolves_inside(entry.path, root_real):
                        yield Path(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    if name_matches(entry.name, include, exclude):
                        yield Path(entry.path)
                elif recursive and entry.is_dir(follow_symlinks=False) and not _any_match(entry.name, exclude):
                    subdirs.append(Path(entry.path))
            except OSError:  # vanished or unreadable between listing and stat
                continue
        stack.extend(reversed(subdirs))
