"""PNG is uncalibrated; MRC calibration comes from the header cell (placeholders refused); the registry sniffs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from copilot.errors import UnreadableFrame
from copilot.readers import FORMATS, read_frame
from copilot.readers.registry import choose


def test_png_is_uncalibrated_even_with_dpi(tmp_path, synth):
    img = synth.sem_like((48, 64))
    path = tmp_path / "shot.png"
    Image.fromarray(img).save(path, dpi=(300, 300))
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.pixels, img)
    assert frame.nm_per_px is None and frame.calibration_source == "none"
    assert frame.meta["format"] == "png"


def test_png_16_bit_and_rgb(tmp_path, synth):
    deep = synth.sem_like((40, 40), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    frame = read_frame(tmp_path / "deep.png")
    assert frame.pixels.dtype == np.uint16
    np.testing.assert_array_equal(frame.pixels, deep)

    grey = synth.sem_like((40, 40))
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "rgb.png").pixels, grey)


def test_png_with_data_bar_is_cropped(tmp_path, synth):
    img = synth.burn_bar(synth.sem_like((300, 400)), 24, style="fei")
    Image.fromarray(img).save(tmp_path / "bar.png")
    frame = read_frame(tmp_path / "bar.png")
    assert frame.meta["data_bar_rows"] == 24 and frame.shape == (276, 400)


def test_truncated_png(tmp_path, synth):
    Image.fromarray(synth.sem_like((128, 128))).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFrame, match="PNG"):
        read_frame(tmp_path / "cut.png")


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_mrc_cell_gives_nm_per_px(tmp_path, synth, dtype):
    img = synth.sem_like((24, 32), dtype=np.uint16).astype(dtype)
    path = synth.write_mrc(tmp_path / "image.mrc", img, cell_angstrom=(32 * 2.5, 24 * 2.5, 2.5))
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.pixels, img)
    assert frame.nm_per_px == pytest.approx(0.25)
    assert frame.calibration_source == "rosettasciio"


@pytest.mark.parametrize("cell", [None, (32.0, 24.0, 1.0)])  # no cell, or the 1 Å/px placeholder
def test_mrc_without_real_cell_is_uncalibrated(tmp_path, synth, cell):
    img = synth.sem_like((24, 32), dtype=np.uint16).astype(np.int16)
    frame = read_frame(synth.write_mrc(tmp_path / "nocell.mrc", img, cell_angstrom=cell))
    assert frame.nm_per_px is None and frame.calibration_source == "none"


def test_truncated_mrc(tmp_path, synth):
    img = synth.sem_like((24, 32), dtype=np.uint16).astype(np.int16)
    path = synth.write_mrc(tmp_path / "cut.mrc", img, cell_angstrom=(80.0, 60.0, 2.5))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UnreadableFrame, match="truncated MRC"):
        read_frame(path)


@pytest.mark.parametrize("head, name", [
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff\xe0", "jpeg"),
    (b"\x00\x00\x00\x03\x00\x0a\x87\x34\x00\x00\x00\x01", "dm3"),
    (b"\x00\x00\x00\x04" + bytes(8) + b"\x00\x00\x00\x01", "dm4"),
    (b"\x89HDF\r\n\x1a\n", "emd"), (b"II\x97\x01\x20\x02", "ser"), (b"AAMVHFSS", "bcf"),
    (bytes(208) + b"MAP ", "mrc"),
])
def test_signatures_win_over_suffix(head, name):
    assert choose(Path("whatever.dat"), head + bytes(16)).name == name


def test_every_registered_format_has_a_suffix():
    assert {"tiff", "png", "dm3", "dm4", "emd", "ser", "bcf", "mrc"} <= set(FORMATS)
    assert all(fmt.suffixes for fmt in FORMATS.values())
