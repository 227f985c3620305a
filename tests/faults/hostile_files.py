"""An acquisition folder full of hostile files interleaved with good frames, and what the daemon must make of each.

``populate(folder, outside)`` writes ≥ 300 hostile entries (truncated, random bytes, lying headers, decompression
bombs, sparse files, NaN/inf, 1×1, RGB/RGBA, stacks, non-UTF-8 and 255-byte names, FIFOs, symlink loops and links
out of the tree, odd types, wrong suffixes, lying calibrations, odd dtypes) and good 128² disc frames between them, in
natural name order. Each entry carries what must happen to it:

* ``ok``: processed into a result (good frames, and hostile-but-readable ones: RGB, stacks, a few NaN pixels…);
* ``refused``: recorded as quarantined or failed with a reason, never a result;
* ``ignored``: never handed to the pipeline (FIFOs, folders, links out of the tree or in a loop);
* ``any``: either refused or processed (formats whose verdict depends on a decoder's tolerance), never a crash.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from tests.conftest import disc_image

SUFFIXES = (".tif", ".tiff", ".png", ".dm3", ".dm4", ".emd", ".ser", ".mrc", ".bcf")


@dataclass
class Entry:
    path: Path  # may hold undecodable bytes (surrogate-escaped)
    kind: str
    expect: str  # ok | refused | ignored | any


@dataclass
class Manifest:
    entries: list[Entry] = field(default_factory=list)

    def of(self, expect: str) -> list[Entry]:
        return [e for e in self.entries if e.expect == expect]

    @property
    def hostile(self) -> list[Entry]:
        return [e for e in self.entries if e.kind != "good"]


def good_image(seed: int, shape=(128, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.integers(20, min(shape) - 20, size=(5, 2))
    return disc_image(shape, centres, 8)


def write_calibrated(path: Path | str, img: np.ndarray, nm_per_px: float = 0.5) -> None:
    """An ImageJ TIFF calibrated in nm (dtypes ImageJ cannot hold are written plain, uncalibrated)."""
    if img.dtype in (np.uint8, np.uint16, np.float32):
        tifffile.imwrite(path, img, imagej=True, resolution=(1 / nm_per_px, 1 / nm_per_px), metadata={"unit": "nm"})
    else:
        tifffile.imwrite(path, img)


class _Writer:
    def __init__(self, folder: Path, manifest: Manifest):
        self.folder, self.manifest, self.n = folder, manifest, 0

    def name(self, kind: str, suffix: str = ".tif") -> Path:
        self.n += 1
        return self.folder / f"h{self.n:04d}-{kind}{suffix}"

    def add(self, path: Path, kind: str, expect: str) -> Path:
        self.manifest.entries.append(Entry(Path(path), kind, expect))
        return Path(path)


def populate(folder: Path, outside: Path, *, good_every: int = 5, seed: int = 0) -> Manifest:
    """Fill ``folder`` (and a ``sub/`` folder) with hostile files and good frames; ``outside`` receives link targets."""
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    manifest = Manifest()
    w = _Writer(folder, manifest)
    rng = np.random.default_rng(seed)
    good_tif = tifffile_bytes(good_image(999))
    makers = [_truncated, _random_bytes, _magic_then_garbage, _lying_headers, _bombs, _sparse, _nonfinite, _tiny,
              _colour, _stacks, _names, _special, _links, _odd_types, _wrong_suffix, _calibration, _dtypes]
    hostile: list = []
    for make in makers:
        hostile.extend(make(w, rng, good_tif, outside))
    count = 0
    for i, write in enumerate(hostile):  # interleave: a good frame after every `good_every` hostile ones
        write()
        if i % good_every == 0:
            count += 1
            path = w.name("good")
            write_calibrated(path, good_image(count))
            w.add(path, "good", "ok")
    sub = folder / "sub"
    sub.mkdir(exist_ok=True)
    for i in range(3):
        path = sub / f"s{i}-good.tif"
        write_calibrated(path, good_image(500 + i))
        w.add(path, "good", "ok")
    return manifest


def tifffile_bytes(img: np.ndarray, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, img, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "nm"}, **kw)
    return buf.getvalue()


def png_bytes(img: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


# --- makers: each returns callables that write one entry (so writing interleaves with good frames) ----------------


def _truncated(w, rng, good_tif, outside):
    png = png_bytes((good_image(3) // 16).astype(np.uint8))
    out = []
    for i in range(40):
        cut = int(rng.integers(1, len(good_tif) - 1))
        out.append(lambda cut=cut: w.add(_put(w.name("truncated"), good_tif[:cut]), "truncated", "refused"))
    for i in range(10):
        cut = int(rng.integers(1, len(png) - 13))  # the last 12 bytes are IEND: without them Pillow still decodes
        out.append(lambda cut=cut: w.add(_put(w.name("truncated", ".png"), png[:cut]), "truncated", "refused"))
    return out


def _random_bytes(w, rng, good_tif, outside):
    out = []
    for i in range(40):
        suffix = SUFFIXES[i % len(SUFFIXES)]
        data = rng.bytes(int(rng.integers(1, 65536)))
        out.append(lambda s=suffix, d=data: w.add(_put(w.name("random", s), d), "random", "refused"))
    return out


def _magic_then_garbage(w, rng, good_tif, outside):
    magics = {".tif": b"II*\x00", ".png": b"\x89PNG\r\n\x1a\n", ".emd": b"\x89HDF\r\n\x1a\n",
              ".dm3": b"\x00\x00\x00\x03" + b"\x00\x00\x10\x00" + b"\x00\x00\x00\x01",
              ".dm4": b"\x00\x00\x00\x04" + b"\x00" * 8 + b"\x00\x00\x00\x01", ".ser": b"II\x97\x01\x10\x02",
              ".bcf": b"AAMVHFSS", ".tiff": b"MM\x00*"}
    out = []
    for i in range(32):
        suffix, magic = list(magics.items())[i % len(magics)]
        data = magic + rng.bytes(int(rng.integers(8, 20000)))
        out.append(lambda s=suffix, d=data: w.add(_put(w.name("magic-garbage", s), d), "magic-garbage", "refused"))
    return out


def _lying_headers(w, rng, good_tif, outside):
    out = []
    for i, (width, height) in enumerate([(60000, 60000), (100000, 3), (3, 100000), (2**31 - 1, 2**31 - 1),
                                         (40000, 40000)] * 2):
        out.append(lambda a=width, b=height: w.add(_put(w.name("lying-tiff"), _tiny_tiff(a, b)), "lying-tiff",
                                                   "refused"))
    for dims in ((0, 100), (100, 0), (0, 0)):
        out.append(lambda d=dims: w.add(_put(w.name("zero-dim-tiff"), _tiny_tiff(*d)), "zero-dim-tiff", "refused"))
    for i in range(5):  # strips beyond the end of the file
        out.append(lambda: w.add(_put(w.name("strip-beyond-eof"), _tiny_tiff(64, 64, strip_offset=10**9)),
                                 "strip-beyond-eof", "refused"))
    for i in range(5):  # an IFD whose next-IFD pointer points back at itself (page loop)
        out.append(lambda: w.add(_put(w.name("ifd-loop"), _tiny_tiff(64, 64, self_loop=True)), "ifd-loop", "any"))
    for size in ((100000, 100000), (2**30, 4), (70000, 70000), (10**6, 10**6), (65535, 65535)):
        out.append(lambda s=size: w.add(_put(w.name("lying-png", ".png"), _png_header_only(*s)), "lying-png",
                                        "refused"))
    for nx, ny, nz in ((100000, 100000, 1), (2**30, 2**30, 1), (512, 512, 10**6), (64, 64, 1), (-5, 64, 1)):
        out.append(lambda d=(nx, ny, nz): w.add(_put(w.name("lying-mrc", ".mrc"), _mrc_header(*d)), "lying-mrc",
                                                "refused"))
    for i in range(3):  # an ImageJ description that claims a million images
        data = good_tif.replace(b"images=1", b"images=999999") if b"images=1" in good_tif else good_tif
        out.append(lambda d=data: w.add(_put(w.name("imagej-lies"), d), "imagej-lies", "any"))
    return out


def _bombs(w, rng, good_tif, outside):
    """Tiny files whose pixels would need gigabytes: refused from the header, before decoding."""
    def tiff_bomb(compression):
        def write():
            path = w.name(f"bomb-{compression}")
            tile = np.zeros((512, 512), np.uint8)
            n = 9216 // 512
            tifffile.imwrite(path, (tile for _ in range(n * n)), shape=(9216, 9216), dtype=np.uint8,
                             tile=(512, 512), compression=compression)
            w.add(path, "bomb", "refused")
        return write

    def png_bomb():
        path = w.name("bomb", ".png")
        _put(path, _png_zero_bomb(9000, 9000))
        w.add(path, "bomb", "refused")

    return [tiff_bomb("zlib"), tiff_bomb("packbits"), tiff_bomb("lzw"), png_bomb, png_bomb]


def _sparse(w, rng, good_tif, outside):
    def sparse_tiff():
        path = w.name("sparse")
        del_ = tifffile.memmap(path, shape=(32768, 32768), dtype=np.uint16)  # 2 GiB of hole
        del del_
        w.add(path, "sparse", "refused")

    def sparse_zero(suffix):
        def write():
            path = w.name("sparse-zero", suffix)
            with open(path, "wb") as fh:
                fh.truncate(2**30)
            w.add(path, "sparse-zero", "refused")
        return write

    return [sparse_tiff, sparse_tiff, sparse_tiff, sparse_zero(".tif"), sparse_zero(".mrc")]


def _nonfinite(w, rng, good_tif, outside):
    def frame(kind, expect, poke, dtype=np.float32):
        def write():
            img = good_image(int(rng.integers(1 << 30))).astype(dtype)
            poke(img)
            path = w.name(kind)
            write_calibrated(path, img)
            w.add(path, kind, expect)
        return write

    def one_nan(a): a[5, 7] = np.nan
    def some_inf(a): a[3:5, 3:5] = np.inf
    def neg_inf(a): a[0, 0] = -np.inf
    def all_nan(a): a[:] = np.nan
    def half_nan(a): a[::2] = np.nan
    def huge(a): a[:] = 3e38
    def huge64(a): a[:] = 1e300
    out = [frame("one-nan", "ok", one_nan) for _ in range(5)]
    out += [frame("some-inf", "ok", some_inf) for _ in range(3)]
    out += [frame("neg-inf", "ok", neg_inf, np.float64) for _ in range(2)]
    out += [frame("all-nan", "refused", all_nan) for _ in range(3)]
    out += [frame("half-nan", "refused", half_nan) for _ in range(3)]
    out += [frame("huge-values", "refused", huge) for _ in range(2)]
    out += [frame("huge-float64", "refused", huge64, np.float64) for _ in range(2)]
    return out


def _tiny(w, rng, good_tif, outside):
    out = []
    for shape, expect in [((1, 1), "refused")] * 4 + [((1, 100), "refused"), ((100, 1), "refused"),
                                                       ((2, 2), "refused"), ((3, 3), "refused"), ((7, 500), "refused"),
                                                       ((5, 5), "refused")] * 2:
        out.append(lambda s=shape, e=expect: _tiny_one(w, s, e, ".tif"))
    for shape in ((1, 1), (1, 7), (2, 2)):
        out.append(lambda s=shape: _tiny_one(w, s, "refused", ".png"))
    return out


def _tiny_one(w, shape, expect, suffix):
    path = w.name(f"tiny-{shape[0]}x{shape[1]}", suffix)
    img = np.full(shape, 200, np.uint8)
    if suffix == ".png":
        Image.fromarray(img).save(path)
    else:
        write_calibrated(path, img)
    w.add(path, "tiny", expect)


def _colour(w, rng, good_tif, outside):
    def tiff(samples):
        def write():
            grey = (good_image(int(rng.integers(1 << 30))) // 8).astype(np.uint8)
            img = np.dstack([grey] * samples)
            img[..., 0] = np.roll(grey, 3)  # real colour, not grey stored as RGB
            path = w.name(f"rgb{samples}")
            tifffile.imwrite(path, img, photometric="rgb", resolution=(2.0, 2.0), resolutionunit="none")
            w.add(path, "colour", "ok")
        return write

    def png(mode):
        def write():
            grey = (good_image(int(rng.integers(1 << 30))) // 8).astype(np.uint8)
            im = Image.fromarray(grey).convert(mode)
            path = w.name(f"png-{mode}", ".png")
            im.save(path)
            w.add(path, "colour", "ok")
        return write

    return [tiff(3) for _ in range(5)] + [tiff(4) for _ in range(5)] + [png(m) for m in ("RGB", "RGBA", "P", "LA")
                                                                      for _ in range(3)]


def _stacks(w, rng, good_tif, outside):
    def pages(n):
        def write():
            path = w.name(f"stack{n}")
            stack = np.stack([good_image(int(rng.integers(1 << 30))) for _ in range(n)])
            tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "nm", "axes": "ZYX"})
            w.add(path, "stack", "ok")
        return write

    def plain_pages(n):
        def write():
            path = w.name(f"pages{n}")
            with tifffile.TiffWriter(path) as tw:
                for _ in range(n):
                    tw.write(good_image(int(rng.integers(1 << 30))))
            w.add(path, "stack", "ok")
        return write

    def mrc_stack(nz):
        def write():
            path = w.name(f"mrc-stack{nz}", ".mrc")
            data = np.stack([good_image(int(rng.integers(1 << 30))).astype(np.float32) for _ in range(nz)])
            _put(path, _mrc_header(128, 128, nz, mode=2) + data.tobytes())
            w.add(path, "stack", "ok")
        return write

    return [pages(n) for n in (2, 3, 5, 20)] + [plain_pages(n) for n in (2, 10, 50)] + [mrc_stack(n) for n in
                                                                                        (1, 5, 20)]


def _names(w, rng, good_tif, outside):
    folder = os.fsencode(w.folder)

    def raw_name(tail: bytes, data: bytes, expect: str, kind: str):
        def write():
            w.n += 1
            raw = os.path.join(folder, f"h{w.n:04d}-".encode() + tail)
            with open(raw, "wb") as fh:
                fh.write(data)
            w.add(Path(os.fsdecode(raw)), kind, expect)
        return write

    bad_utf8 = [b"\xff\xfe.tif", b"caf\xe9.tif", b"\xc3\x28.tif", b"\xed\xa0\x80.tif", b"\x80\x81\x82.tif",
                b"ok-then-\xfe.tiff", b"\xf8\x88\x80\x80\x80.tif", b"a\x1b[31mred.tif", b"new\nline.tif",
                b"tab\there.tif"]
    out = [raw_name(t, tifffile_bytes(good_image(700 + i)), "ok", "non-utf8-name") for i, t in enumerate(bad_utf8)]
    for i in range(5):
        tail = b"x" * (255 - 6 - 4) + b".tif"  # 255 bytes in all with the "hNNNN-" prefix
        out.append(raw_name(tail, tifffile_bytes(good_image(800 + i)), "ok", "255-byte-name"))
    for i in range(3):
        tail = ("é" * 120).encode()[: 255 - 6 - 4 - (i % 2)] + b".tif"  # multi-byte letters cut to 255 bytes
        tail = tail if len(tail) <= 249 else tail[-249:]
        out.append(raw_name(tail, rng.bytes(100), "refused", "255-byte-name-garbage"))
    for i in range(4):
        out.append(raw_name(f"ünïcødé {i} 日本.tif".encode(), tifffile_bytes(good_image(900 + i)), "ok",
                            "unicode-name"))
    return out


def _special(w, rng, good_tif, outside):
    def fifo():
        path = w.name("fifo")
        os.mkfifo(path)
        w.add(path, "fifo", "ignored")

    return [fifo for _ in range(5)]


def _links(w, rng, good_tif, outside):
    out_good = outside / "outside-good.tif"
    if not out_good.exists():
        write_calibrated(out_good, good_image(4242))

    def link(kind, target, expect):
        def write():
            path = w.name(kind)
            os.symlink(target(path) if callable(target) else target, path)
            w.add(path, kind, expect)
        return write

    def dir_loop():
        w.n += 1
        loop = w.folder / f"h{w.n:04d}-loop"
        loop.mkdir()
        os.symlink("..", loop / "up")  # loop<n>/up -> the watched folder itself
        os.symlink(str(w.folder), loop / "again")
        path = loop / "inside.tif"
        write_calibrated(path, good_image(31337 + w.n))
        w.add(path, "in-loop-folder", "ok")
        w.add(loop / "up", "dir-link-loop", "ignored")
        w.add(loop / "again", "dir-link-loop", "ignored")

    def out_dir():
        w.n += 1
        path = w.folder / f"h{w.n:04d}-outdir"
        os.symlink(str(outside), path)  # a linked folder out of the tree: never descended into
        w.add(path, "dir-link-out", "ignored")

    def mutual():
        a, b = w.name("mutual-a"), w.name("mutual-b")
        os.symlink(b.name, a)
        os.symlink(a.name, b)
        w.add(a, "link-loop", "ignored")
        w.add(b, "link-loop", "ignored")

    def inside():
        target = w.name("link-target")
        write_calibrated(target, good_image(6000 + w.n))
        w.add(target, "good", "ok")
        path = w.name("link-inside")
        os.symlink(target.name, path)
        w.add(path, "link-inside", "ok")

    return ([link("self-loop", lambda p: p.name, "ignored") for _ in range(3)] + [mutual, mutual]
            + [link("link-out", str(out_good), "ignored") for _ in range(3)]
            + [link("link-dev-zero", "/dev/zero", "ignored"), link("link-dev-zero", "/dev/zero", "ignored"),
               link("link-passwd", "/etc/passwd", "ignored"), link("dangling", "does-not-exist.tif", "ignored"),
               link("dangling", "/nonexistent/x.tif", "ignored")]
            + [dir_loop, dir_loop, out_dir, inside, inside])


def _odd_types(w, rng, good_tif, outside):
    def folder_named_tif():
        path = w.name("folder")
        path.mkdir()
        w.add(path, "folder", "ignored")

    def empty(suffix):
        def write():
            w.add(_put(w.name("empty", suffix), b""), "empty", "ignored")
        return write

    def zeros():
        w.add(_put(w.name("zeros"), bytes(4096)), "zeros", "refused")

    return [folder_named_tif] * 3 + [empty(s) for s in (".tif", ".png", ".mrc", ".dm3", ".emd")] + [zeros] * 3


def _wrong_suffix(w, rng, good_tif, outside):
    def tif_as(suffix):
        def write():
            w.add(_put(w.name("tiff-as", suffix), tifffile_bytes(good_image(int(rng.integers(1 << 30))))),
                  "wrong-suffix", "ok")
        return write

    def png_as_tif():
        img = (good_image(int(rng.integers(1 << 30))) // 8).astype(np.uint8)
        w.add(_put(w.name("png-as"), png_bytes(img)), "wrong-suffix", "ok")

    return [tif_as(".png"), tif_as(".png"), tif_as(".dm3"), png_as_tif, png_as_tif, png_as_tif]


def _calibration(w, rng, good_tif, outside):
    def calibrated(nm, expect, kind):
        def write():
            path = w.name(kind)
            write_calibrated(path, good_image(int(rng.integers(1 << 30))), nm_per_px=nm)
            w.add(path, kind, expect)
        return write

    # a calibration the card cannot use as is: the scale choice follows the particles' size in pixels, within its
    # clamps (never more than 2x enlarged, never a grid below its minimum), so such frames are measured, not refused
    return ([calibrated(10.0, "ok", "upsample-20x") for _ in range(3)]
            + [calibrated(1e-6, "ok", "grid-below-1px") for _ in range(3)]
            + [calibrated(1e300, "ok", "absurd-calibration")]  # beyond what a resolution tag can mean: uncalibrated
            + [calibrated(0.25, "ok", "fine-calibration")])


def _dtypes(w, rng, good_tif, outside):
    def typed(dtype, expect):
        def write():
            img = good_image(int(rng.integers(1 << 30)))
            path = w.name(f"dtype-{np.dtype(dtype).name}")
            arr = (img > 500) if dtype is bool else img.astype(dtype)
            tifffile.imwrite(path, arr)
            w.add(path, "dtype", expect)
        return write

    return [typed(bool, "ok"), typed(np.int32, "ok"), typed(np.float64, "ok"), typed(np.int8, "ok"),
            typed(np.complex64, "refused"), typed(np.uint64, "ok")]


# --- byte-level builders -----------------------------------------------------------------------------------------


def _put(path: Path, data: bytes) -> Path:
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _tiny_tiff(width: int, height: int, *, strip_offset: int | None = None, self_loop: bool = False) -> bytes:
    """A little-endian TIFF whose one IFD declares ``width``×``height`` 8-bit pixels in a single tiny strip."""
    entries = []

    def tag(code, typ, count, value):
        entries.append(struct.pack("<HHII", code, typ, count, value))

    data_offset = 8
    pixels = bytes(64)
    ifd_offset = data_offset + len(pixels)
    tag(256, 4, 1, width)
    tag(257, 4, 1, height)
    tag(258, 3, 1, 8)
    tag(259, 3, 1, 1)
    tag(262, 3, 1, 1)
    tag(273, 4, 1, strip_offset if strip_offset is not None else data_offset)
    tag(277, 3, 1, 1)
    tag(278, 4, 1, height)
    tag(279, 4, 1, min(len(pixels), max(1, width * height)))
    next_ifd = ifd_offset if self_loop else 0
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", next_ifd)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + pixels + ifd


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_zero_bomb(width: int, height: int) -> bytes:
    """A real, complete PNG of zeros: about 80 kB that inflate to width×height bytes."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def _mrc_header(nx: int, ny: int, nz: int, mode: int = 0) -> bytes:
    head = bytearray(1024)
    head[0:16] = struct.pack("<iiii", nx, ny, nz, mode)
    head[28:40] = struct.pack("<iii", nx, ny, nz)  # mx, my, mz
    head[40:52] = struct.pack("<fff", nx * 5.0, ny * 5.0, nz * 5.0)  # cell in Å: 0.5 nm/px
    head[64:76] = struct.pack("<iii", 1, 2, 3)
    head[208:212] = b"MAP "
    head[212:216] = b"\x44\x44\x00\x00"
    return bytes(head)


def describe(manifest: Manifest) -> str:
    kinds: dict[str, int] = {}
    for e in manifest.hostile:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return json.dumps(kinds, sort_keys=True)
