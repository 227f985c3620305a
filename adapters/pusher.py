#!/usr/bin/env python3
"""Send microscope frames to a copilot daemon over ZeroMQ -- runs on the instrument PC.

Single file, Python >= 3.8, needs numpy and pyzmq; tifffile is optional (for .tif/.tiff). It does not import the
copilot package. Wire format: adapters/WIRE.md (version 1).

Command line::

    python pusher.py --endpoint tcp://analysis-pc:5557 --stream stem1 --nm-per-px 0.25 image1.tif image2.npy
    python pusher.py --endpoint tcp://analysis-pc:5557 --stream stem1 --watch D:\\Acquisition   # push new files

From a script (e.g. the microscope's own Python scripting)::

    from pusher import Pusher
    with Pusher("tcp://analysis-pc:5557", stream="stem1") as p:
        p.send(image_array, nm_per_px=0.25, frame_id="0001", meta={"detector": "HAADF"})

The daemon binds to 127.0.0.1 by default: to receive from another machine it must be configured to bind to a
reachable address (an explicit choice), or tunnel the port (ssh -L 5557:127.0.0.1:5557 analysis-pc).
"""

import argparse
import datetime
import fnmatch
import json
import math
import os
import sys
import time

import numpy as np
import zmq

WIRE_VERSION = 1
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5557"
FILE_PATTERNS = ("*.tif", "*.tiff", "*.npy")
EXCLUDE_PATTERNS = (".*", "*.tmp", "*.part", "~*")

# wire dtype name -> numpy dtype (little-endian)
DTYPES = {
    "uint8": np.dtype("|u1"),
    "uint16": np.dtype("<u2"),
    "int16": np.dtype("<i2"),
    "uint32": np.dtype("<u4"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}

# (numpy kind, itemsize) of a source array -> wire dtype name it is sent as
_TARGET = {
    ("b", 1): "uint8",
    ("u", 1): "uint8",
    ("i", 1): "int16",
    ("u", 2): "uint16",
    ("i", 2): "int16",
    ("u", 4): "uint32",
    ("i", 4): "int32",
    ("f", 2): "float32",
    ("f", 4): "float32",
    ("f", 8): "float64",
    ("u", 8): "float64",
    ("i", 8): "float64",
}


def to_wire(pixels):
    """Return (wire dtype name, C-contiguous little-endian 2-D array)."""
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise ValueError("a frame must be 2-D, got shape %s" % (a.shape,))
    name = _TARGET.get((a.dtype.kind, a.dtype.itemsize))
    if name is None:
        raise ValueError("dtype %s cannot be sent; supported: %s" % (a.dtype, ", ".join(DTYPES)))
    return name, np.ascontiguousarray(a, dtype=DTYPES[name])


def encode(pixels, stream=None, frame_id=None, nm_per_px=None, acquired_at=None, meta=None):
    """Build the two message parts [header bytes, pixel buffer] (see WIRE.md)."""
    name, a = to_wire(pixels)
    header = {"v": WIRE_VERSION, "shape": [int(a.shape[0]), int(a.shape[1])], "dtype": name}
    if stream is not None:
        header["stream"] = str(stream)
    if frame_id is not None:
        header["frame_id"] = str(frame_id)
    if nm_per_px is not None:
        nm_per_px = float(nm_per_px)
        if not (math.isfinite(nm_per_px) and nm_per_px > 0):
            raise ValueError("nm_per_px must be positive and finite, got %r" % nm_per_px)
    header["nm_per_px"] = nm_per_px
    if acquired_at is not None:
        if isinstance(acquired_at, (int, float)):  # a POSIX timestamp such as a file's mtime
            acquired_at = datetime.datetime.fromtimestamp(acquired_at, datetime.timezone.utc)
        if acquired_at.tzinfo is None:
            acquired_at = acquired_at.astimezone()  # local time of this PC, made explicit
        header["acquired_at"] = acquired_at.isoformat()
    if meta:
        header["meta"] = meta
    raw = json.dumps(header, allow_nan=False, separators=(",", ":"), default=str).encode("utf-8")
    return [raw, memoryview(a).cast("B")]


class Pusher(object):
    """A PUSH socket that sends frames to the daemon; waits up to ``timeout_s`` for a receiver."""

    def __init__(self, endpoint=DEFAULT_ENDPOINT, stream=None, bind=False, timeout_s=10.0):
        self.endpoint = endpoint
        self.stream = stream
        self.timeout_ms = max(1, int(timeout_s * 1000))
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        self._sock.setsockopt(zmq.SNDHWM, 4)
        self._sock.setsockopt(zmq.LINGER, self.timeout_ms)
        if bind:
            self._sock.bind(endpoint)
        else:
            self._sock.connect(endpoint)
        self._count = 0

    def send(self, pixels, nm_per_px=None, frame_id=None, acquired_at=None, meta=None, stream=None):
        """Send one 2-D frame. Raises TimeoutError (Python 3) / zmq.Again when no receiver takes it in time."""
        self._count += 1
        if frame_id is None:
            frame_id = "%s-%06d" % (time.strftime("%Y%m%dT%H%M%S"), self._count)
        parts = encode(pixels, stream=stream or self.stream, frame_id=frame_id, nm_per_px=nm_per_px,
                       acquired_at=acquired_at, meta=meta)
        try:
            self._sock.send_multipart(parts, copy=False)
        except zmq.Again:
            raise TimeoutError("no receiver took a frame at %s within %.1f s" % (self.endpoint, self.timeout_ms / 1e3))
        return frame_id

    def close(self):
        """Close, waiting up to timeout_s for queued frames to leave."""
        if self._sock is not None:
            self._sock.close()
            self._ctx.term()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------------- file reading


def read_frames(path):
    """Yield (suffix, 2-D array) for an image file: .npy, or .tif/.tiff (needs tifffile). Stacks give one per page."""
    low = path.lower()
    if low.endswith(".npy"):
        data = np.load(path, allow_pickle=False)
    elif low.endswith((".tif", ".tiff")):
        try:
            import tifffile
        except ImportError:
            raise RuntimeError("reading %s needs tifffile (pip install tifffile)" % path)
        data = tifffile.imread(path)
    else:
        raise RuntimeError("unsupported file type: %s (use .tif, .tiff or .npy)" % path)
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] in (3, 4):  # RGB(A) export of a greyscale image
        rgb = data[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            data = rgb[..., 0]
        else:
            data = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    if data.ndim == 2:
        yield "", data
    elif data.ndim == 3:
        for i in range(data.shape[0]):
            yield "-%04d" % i, data[i]
    else:
        raise RuntimeError("%s: cannot send an image of shape %s" % (path, data.shape))


def push_file(pusher, path, nm_per_px=None):
    base = os.path.splitext(os.path.basename(path))[0]
    mtime = os.path.getmtime(path)
    sent = 0
    for suffix, frame in read_frames(path):
        fid = pusher.send(frame, nm_per_px=nm_per_px, frame_id=base + suffix, acquired_at=mtime,
                          meta={"source_file": os.path.abspath(path)})
        print("pushed %s (%dx%d %s) as %s" % (path, frame.shape[0], frame.shape[1], frame.dtype, fid))
        sent += 1
    return sent


def _wanted(name):
    low = name.lower()
    return (any(fnmatch.fnmatchcase(low, p) for p in FILE_PATTERNS)
            and not any(fnmatch.fnmatchcase(low, p) for p in EXCLUDE_PATTERNS))


def _listing(folder):
    out = {}
    for entry in os.scandir(folder):
        try:
            if entry.is_file() and _wanted(entry.name):
                st = entry.stat()
                out[entry.path] = (st.st_size, st.st_mtime)
        except OSError:
            pass
    return out


def watch(pusher, folder, nm_per_px=None, settle_s=1.0, poll_s=0.5, existing="skip"):
    """Poll ``folder``; push each new file once its size and mtime have been stable for ``settle_s``."""
    done = {}  # path -> signature pushed
    if existing == "skip":
        done.update(_listing(folder))
    last = {}  # path -> (signature, monotonic time it was first seen)
    print("watching %s (Ctrl+C to stop)" % folder)
    while True:
        now = time.monotonic()
        for path, sig in _listing(folder).items():
            if done.get(path) == sig or sig[0] == 0:
                continue
            prev = last.get(path)
            if prev is None or prev[0] != sig:
                last[path] = (sig, now)
            elif now - prev[1] >= settle_s:
                try:
                    push_file(pusher, path, nm_per_px)
                except (RuntimeError, ValueError, OSError) as exc:
                    print("skipped %s: %s" % (path, exc), file=sys.stderr)
                done[path] = sig
                del last[path]
        time.sleep(poll_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Send frames to a copilot daemon (wire format: WIRE.md).")
    ap.add_argument("files", nargs="*", metavar="FILE", help=".tif/.tiff/.npy files or folders")
    ap.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="daemon socket (default %s)" % DEFAULT_ENDPOINT)
    ap.add_argument("--stream", default=None, help="stream name, e.g. the microscope's name")
    ap.add_argument("--nm-per-px", type=float, default=None, help="pixel size in nm (default: uncalibrated)")
    ap.add_argument("--bind", action="store_true", help="bind instead of connecting")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a receiver (10)")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between files")
    ap.add_argument("--watch", metavar="FOLDER", help="keep pushing new files that appear in FOLDER")
    ap.add_argument("--settle", type=float, default=1.0, help="--watch: seconds a file must be unchanged (1)")
    ap.add_argument("--existing", choices=("skip", "process"), default="skip",
                    help="--watch: what to do with files already there (skip)")
    args = ap.parse_args(argv)
    if not args.files and not args.watch:
        ap.error("give FILEs or --watch FOLDER")

    files = []
    for item in args.files:
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if _wanted(n))
            files.extend(os.path.join(item, n) for n in names)
        else:
            files.append(item)

    pusher = Pusher(args.endpoint, stream=args.stream, bind=args.bind, timeout_s=args.timeout)
    try:
        for i, path in enumerate(files):
            if i and args.interval > 0:
                time.sleep(args.interval)
            push_file(pusher, path, args.nm_per_px)
        if args.watch:
            watch(pusher, args.watch, args.nm_per_px, args.settle, existing=args.existing)
    except KeyboardInterrupt:
        pass
    except (TimeoutError, RuntimeError, ValueError, OSError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    finally:
        pusher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
