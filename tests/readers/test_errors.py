"""Broken, cut and unknown files raise UnreadableFrame with a reason a person can act on — never anything else."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copilot.errors import UnreadableFrame
from copilot.readers import read_frame


def test_truncated_tiff(tmp_path, synth):
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, synth.sem_like((128, 128), dtype=np.uint16))
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFrame) as info:
        read_frame(cut)
    assert "truncated" in info.value.reason
    assert info.value.origin == str(cut)


def test_tiff_cut_before_its_directory(tmp_path, synth):
    # instruments (FEI) write the directory after the pixels: a partial copy loses it first
    path = tmp_path / "ifd_last.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(synth.sem_like((64, 64)))
    data = bytearray(path.read_bytes())
    data[4:8] = (len(data) + 100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFrame, match="truncated TIFF: the first image directory"):
        read_frame(path)


def test_random_bytes_with_tif_suffix(tmp_path):
    path = tmp_path / "noise.tif"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableFrame) as info:
        read_frame(path)
    assert "TIFF signature" in info.value.reason


def test_tiff_magic_then_garbage(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableFrame, match="TIFF"):
        read_frame(path)


@pytest.mark.parametrize("name, content, words", [
    ("empty.tif", b"", "empty"),
    ("notes.xyz", b"hello microscope", "unknown format"),
    ("frame.dm3", b"\x00\x00\x00\x07 not a DM file at all", "signature"),
])
def test_empty_unknown_and_mislabelled(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFrame, match=words):
        read_frame(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UnreadableFrame, match="does not exist"):
        read_frame(tmp_path / "gone.tif")
    with pytest.raises(UnreadableFrame, match="not a regular file"):
        read_frame(tmp_path)


def test_complex_and_one_row_tiffs_are_refused(tmp_path):
    fft = tmp_path / "fft.tif"
    tifffile.imwrite(fft, np.zeros((16, 16), np.complex64))
    with pytest.raises(UnreadableFrame, match="complex"):
        read_frame(fft)
    line = tmp_path / "line.tif"
    tifffile.imwrite(line, np.zeros((1, 64), np.uint8))
    with pytest.raises(UnreadableFrame, match="too small"):
        read_frame(line)


def test_tiff_saved_as_png_is_read_by_its_signature(tmp_path, synth):
    img = synth.sem_like((32, 32))
    path = tmp_path / "really_a_tiff.png"
    tifffile.imwrite(path, img)
    np.testing.assert_array_equal(read_frame(path).pixels, img)


_SIGNATURES = {
    ".tif": b"II*\x00",
    ".png": b"\x89PNG\r\n\x1a\n",
    ".dm3": b"\x00\x00\x00\x03\x00\x00\x10\x00\x00\x00\x00\x01",
    ".dm4": b"\x00\x00\x00\x04" + bytes(8) + b"\x00\x00\x00\x01",
    ".emd": b"\x89HDF\r\n\x1a\n",
    ".ser": b"II\x97\x01\x10\x02",
    ".bcf": b"AAMVHFSS",
    ".mrc": b"",
    ".jpg": b"\xff\xd8\xff",
    ".bin": b"",
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(sorted(_SIGNATURES)), tail=st.binary(min_size=0, max_size=3000))
def test_fuzzed_files_only_ever_raise_unreadable_frame(tmp_path, suffix, tail):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(_SIGNATURES[suffix] + tail)
    try:
        read_frame(path)
    except UnreadableFrame as exc:
        assert exc.reason
