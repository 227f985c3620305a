"""Input bounds at the reader: pixel counts from the header before decoding, non-finite pixels, any-byte file names,
special files."""

from __future__ import annotations

import os
import resource
import struct
import zlib

import numpy as np
import pytest
import tifffile

from copilot.errors import RefusedFrame, UnreadableFrame
from copilot.readers import read_frame
from copilot.readers.limits import InputLimits, checked_pixels


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_tiff_bomb_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.tif"
    tile = np.zeros((512, 512), np.uint8)
    tifffile.imwrite(path, (tile for _ in range(18 * 18)), shape=(9216, 9216), dtype=np.uint8, tile=(512, 512),
                     compression="zlib")
    assert path.stat().st_size < 2 * 2**20
    before = _rss_mb()
    with pytest.raises(RefusedFrame, match=r"84\.9 Mpx 9216×9216.*max_frame_mpx = 50 \(refused before decoding\)"):
        read_frame(path)
    assert _rss_mb() - before < 80  # never decoded (81 MB of pixels)


def test_sparse_tiff_is_refused_without_reading_its_hole(tmp_path):
    path = tmp_path / "sparse.tif"
    mm = tifffile.memmap(path, shape=(32768, 32768), dtype=np.uint16)
    del mm
    assert path.stat().st_size > 2**31 and path.stat().st_blocks * 512 < 2**20
    with pytest.raises(RefusedFrame, match="1073.7 Mpx"):
        read_frame(path)


def test_png_header_lying_about_its_size_is_refused_before_decoding(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(bytes(64)))
            + _png_chunk(b"IEND", b""))
    (tmp_path / "liar.png").write_bytes(data)
    with pytest.raises(RefusedFrame, match="refused before decoding"):
        read_frame(tmp_path / "liar.png")
    ihdr = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)  # below Pillow's own bound, above ours
    (tmp_path / "liar2.png").write_bytes(data.replace(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8,
                                                                                        0, 0, 0, 0)),
                                                      _png_chunk(b"IHDR", ihdr)))
    with pytest.raises(RefusedFrame, match="81.0 Mpx 9000×9000"):
        read_frame(tmp_path / "liar2.png")


def test_mrc_header_lying_about_its_size_is_refused(tmp_path):
    head = bytearray(1024)
    head[0:16] = struct.pack("<iiii", 100000, 100000, 1, 0)
    head[208:212] = b"MAP "
    (tmp_path / "liar.mrc").write_bytes(bytes(head))
    with pytest.raises(RefusedFrame, match="max_frame_mpx"):
        read_frame(tmp_path / "liar.mrc")


def test_limits_are_configurable(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.ones((128, 128), np.uint16))
    assert read_frame(tmp_path / "f.tif").shape == (128, 128)
    with pytest.raises(RefusedFrame, match="max_frame_mpx = 0.01"):
        read_frame(tmp_path / "f.tif", limits=InputLimits(max_frame_mpx=0.01))
    with pytest.raises(RefusedFrame, match="max_decoded_mb"):
        read_frame(tmp_path / "f.tif", limits=InputLimits(max_decoded_mb=0.01))


def test_a_few_nan_pixels_are_masked_many_are_refused(tmp_path):
    img = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    img[3, 4] = np.nan
    img[10, 10] = np.inf
    tifffile.imwrite(tmp_path / "few.tif", img)
    frame = read_frame(tmp_path / "few.tif")
    assert np.isfinite(frame.pixels).all()
    assert frame.meta["nonfinite_px"] == 2 and frame.pixels[3, 4] == pytest.approx(np.median(img[np.isfinite(img)]))
    img[:20] = np.nan
    tifffile.imwrite(tmp_path / "many.tif", img)
    with pytest.raises(RefusedFrame, match=r"1280 of 4096 pixels \(31.2%\) are NaN"):
        read_frame(tmp_path / "many.tif")
    huge = np.full((64, 64), 1e300)
    with pytest.raises(RefusedFrame, match="beyond"):
        checked_pixels(huge, "mem")


def test_file_names_of_any_bytes(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"frame-\xff\xfe-caf\xe9.tif")
    tifffile.imwrite(raw.decode("utf-8", "surrogateescape"), np.ones((32, 32), np.uint16))
    frame = read_frame(os.fsdecode(raw))
    assert frame.origin.endswith("frame-\\xff\\xfe-caf\\xe9.tif") and frame.frame_id == "frame-\\xff\\xfe-caf\\xe9"
    frame.origin.encode("utf-8")  # goes into SQLite and JSON as is
    long_name = tmp_path / ("x" * 251 + ".tif")
    tifffile.imwrite(long_name, np.ones((32, 32), np.uint16))
    assert read_frame(long_name).frame_id == "x" * 251


def test_fifo_and_folders_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.tif")  # opening it for reading would block until a writer comes
    with pytest.raises(UnreadableFrame, match="not a regular file"):
        read_frame(tmp_path / "pipe.tif")
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(UnreadableFrame, match="not a regular file"):
        read_frame(tmp_path / "dir.tif")


@pytest.mark.parametrize("shape", [(1, 1), (1, 64), (64, 1)])
def test_degenerate_images_are_refused(tmp_path, shape):
    tifffile.imwrite(tmp_path / "t.tif", np.ones(shape, np.uint8))
    with pytest.raises(UnreadableFrame, match="too small|not a 2-D"):
        read_frame(tmp_path / "t.tif")
