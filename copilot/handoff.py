"""Hand dataclass trees of numpy arrays to another process of this program without pickle.

``Channel.pack(obj)`` writes every array of ``obj`` into the channel's shared-memory block and describes the rest as
JSON: dataclasses by their ``copilot.*`` type and fields, tuples, lists, dicts, datetimes, paths, numpy scalars and
plain values. ``Reader.unpack(header)`` rebuilds the tree on the other side; only dataclasses defined in the
``copilot`` package are rebuilt (no code is named by the data itself). A channel keeps its block from one message to
the next (created once, grown when a message does not fit): the writer may write again once the reader has answered.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from datetime import datetime
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path, PurePath
from typing import Any

import numpy as np

_ALIGN = 64


class _Arrays(list):
    """The arrays met while encoding, in order, with where each one is (by identity)."""

    def __init__(self) -> None:
        super().__init__()
        self.where: dict[int, int] = {}


class HandoffError(ValueError):
    """Something that cannot cross: an object array, a type outside the copilot package."""


def _encode(obj: Any, arrays: _Arrays) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise HandoffError("object arrays cannot be handed over")
        if id(obj) not in arrays.where:  # the same array twice (the entropy map as the uncertainty): written once
            arrays.where[id(obj)] = len(arrays)
            arrays.append(obj)
        return {"$a": arrays.where[id(obj)]}
    if isinstance(obj, np.generic):
        return {"$s": obj.dtype.str, "v": obj.item()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        if not cls.__module__.startswith("copilot."):
            raise HandoffError(f"{cls.__module__}.{cls.__qualname__} is not a copilot type")
        return {"$c": f"{cls.__module__}:{cls.__qualname__}",
                "f": {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj) if f.init}}
    if isinstance(obj, tuple):
        return {"$t": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        return {"$d": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, datetime):
        return {"$dt": obj.isoformat()}
    if isinstance(obj, PurePath):
        return {"$p": str(obj)}
    raise HandoffError(f"{type(obj).__name__} cannot be handed over")


def _dataclass_type(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith("copilot."):
        raise HandoffError(f"{name} is not a copilot type")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise HandoffError(f"{name} is not a dataclass")
    return obj


def _decode(node: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if "$a" in node:
        return arrays[node["$a"]]
    if "$s" in node:
        return np.dtype(node["$s"]).type(node["v"])
    if "$c" in node:
        return _dataclass_type(node["$c"])(**{k: _decode(v, arrays) for k, v in node["f"].items()})
    if "$t" in node:
        return tuple(_decode(v, arrays) for v in node["$t"])
    if "$d" in node:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in node["$d"]}
    if "$dt" in node:
        return datetime.fromisoformat(node["$dt"])
    if "$p" in node:
        return Path(node["$p"])
    raise HandoffError(f"unknown node {sorted(node)}")


def _untrack(shm: shared_memory.SharedMemory) -> None:
    """A reader's mapping: keep Python's resource tracker out of it (before 3.13 attaching registers the block, and
    the tracker would then warn about, or remove, a block its writer still owns)."""
    try:
        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 (the documented workaround)
    except Exception:
        pass


def reserved_block(need: int) -> shared_memory.SharedMemory:
    """A new block of at least ``need`` bytes (a quarter more when there is room, so that slightly larger messages
    reuse it) whose pages are reserved at once. Shared memory lives in /dev/shm, 64 MiB in a default Docker container:
    writing into a block the filesystem cannot back kills the writer with SIGBUS, while reserving fails cleanly, and
    the caller then hands the message over some other way (``HandoffError``)."""
    error = None
    for size in dict.fromkeys((max(int(need * 1.25), 1 << 20), need)):  # the roomy size first, then the exact one
        try:
            shm = shared_memory.SharedMemory(create=True, size=size)
        except OSError as exc:
            error = exc
            continue
        fd = getattr(shm, "_fd", -1)  # POSIX: the block's descriptor
        try:
            if fd >= 0 and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            return shm
        except OSError as exc:
            error = exc
            shm.close()
            shm.unlink()
    raise HandoffError(f"no room for {need / 2**20:.1f} MiB of shared memory ({error}); a container needs a larger "
                       "/dev/shm (docker run --shm-size)")


class Channel:
    """The writing side: one shared-memory block, reused for every message (grown when one does not fit)."""

    def __init__(self) -> None:
        self.shm: shared_memory.SharedMemory | None = None

    def pack(self, obj: Any) -> dict:
        """Write ``obj``'s arrays into the block; returns the JSON-able header the reader needs."""
        arrays = _Arrays()
        tree = _encode(obj, arrays)
        layout, offset = [], 0
        for a in arrays:
            offset = -(-offset // _ALIGN) * _ALIGN
            layout.append([offset, a.dtype.str, list(a.shape)])
            offset += a.nbytes
        if not arrays:
            return {"tree": tree, "block": None, "layout": []}
        if self.shm is None or self.shm.size < offset:
            self.close()
            self.shm = reserved_block(offset)
        for a, (start, _, _) in zip(arrays, layout):
            np.ndarray(a.shape, a.dtype, buffer=self.shm.buf, offset=start)[...] = a
        return {"tree": tree, "block": self.shm.name, "layout": layout}

    def close(self) -> None:
        if self.shm is not None:
            self.shm.close()
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
            self.shm = None


class Reader:
    """The reading side: maps the writer's block (again when the writer grew it)."""

    def __init__(self) -> None:
        self.shm: shared_memory.SharedMemory | None = None

    def unpack(self, header: dict, copy: bool = True) -> Any:
        """The object a header describes. ``copy=False``: its arrays are views into the block, valid until the
        writer writes its next message."""
        if header["layout"] and (self.shm is None or self.shm.name != header["block"].lstrip("/")):
            self.close()
            self.shm = shared_memory.SharedMemory(name=header["block"])
            _untrack(self.shm)
        views = [np.ndarray(tuple(shape), np.dtype(dtype), buffer=self.shm.buf, offset=start)
                 for start, dtype, shape in header["layout"]]
        return _decode(header["tree"], [v.copy() for v in views] if copy else views)

    def close(self) -> None:
        if self.shm is not None:
            try:
                self.shm.close()
            except BufferError:  # views still in use somewhere: the mapping goes when they do
                pass
            self.shm = None


def dumps(message: dict) -> bytes:
    return json.dumps(message, allow_nan=True).encode()


def loads(data: bytes) -> dict:
    return json.loads(data)
