"""Synthetic TIFFs written with tifffile round-trip pixels and calibration; the dpi rule keeps print settings out."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest
import tifffile

from copilot.readers import read_frame


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("unit, per_unit, expected_nm", [
    ("nm", 4.0, 0.25),
    ("micron", 2.0, 500.0),
    ("um", 10.0, 100.0),
    ("\\u00B5m", 10.0, 100.0),  # ImageJ's escaped µ
    ("\\u00C5", 0.5, 0.2),  # Å as ImageJ escapes it
])
def test_imagej_unit_and_resolution(tmp_path, synth, dtype, unit, per_unit, expected_nm):
    img = synth.sem_like((64, 80), dtype=dtype)
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, img, imagej=True, resolution=(per_unit, per_unit), metadata={"unit": unit})

    frame = read_frame(path)
    assert frame.nm_per_px == pytest.approx(expected_nm, rel=1e-6)
    assert frame.calibration_source == "imagej"
    assert frame.pixels.dtype == img.dtype
    np.testing.assert_array_equal(frame.pixels, img)


def test_imagej_without_unit_is_uncalibrated(tmp_path, synth):
    path = tmp_path / "plain_ij.tif"
    tifffile.imwrite(path, synth.sem_like((32, 32)), imagej=True)
    frame = read_frame(path)
    assert frame.nm_per_px is None and frame.calibration_source == "none"


def test_imagej_stack_gives_first_plane(tmp_path, synth):
    stack = np.stack([synth.sem_like((40, 50), seed=s, dtype=np.uint16) for s in range(5)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "nm", "axes": "ZYX"})
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.pixels, stack[0])
    assert frame.meta["pages"] == 5
    assert frame.nm_per_px == pytest.approx(0.5)


@pytest.mark.parametrize("unit, per_unit, expected_nm", [
    ("CENTIMETER", 1e7 / 2.0, 2.0),  # 5e6 px/cm = 2 nm/px
    ("INCH", 2.54e7 / 0.5, 0.5),
    ("CENTIMETER", 7038270, 1.4208037),  # TVIPS-style
])
def test_plain_resolution_tags_calibrate_when_finer_than_a_micrometre(tmp_path, synth, unit, per_unit, expected_nm):
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, synth.sem_like((32, 48), dtype=np.uint16), resolution=(per_unit, per_unit),
                     resolutionunit=unit)
    frame = read_frame(path)
    assert frame.nm_per_px == pytest.approx(expected_nm, rel=1e-6)
    assert frame.calibration_source == "tiff-resolution"


@pytest.mark.parametrize("dpi", [72, 96, 150, 300, 600, 2400, 9600])
def test_dpi_like_resolution_is_not_a_calibration(tmp_path, synth, dpi):
    path = tmp_path / "print.tif"
    tifffile.imwrite(path, synth.sem_like((32, 32)), resolution=(dpi, dpi), resolutionunit="INCH")
    frame = read_frame(path)
    assert frame.nm_per_px is None and frame.calibration_source == "none"
    assert "not a specimen scale" in frame.meta["ignored_resolution"]


def test_resolution_without_unit_is_not_a_calibration(tmp_path, synth):
    path = tmp_path / "ratio.tif"
    tifffile.imwrite(path, synth.sem_like((32, 32)), resolution=(1e8, 1e8), resolutionunit="NONE")
    assert read_frame(path).nm_per_px is None


def test_anisotropic_resolution_recorded(tmp_path, synth):
    path = tmp_path / "aniso.tif"
    tifffile.imwrite(path, synth.sem_like((32, 32)), resolution=(1e7, 5e6), resolutionunit="CENTIMETER")
    frame = read_frame(path)
    assert frame.nm_per_px == pytest.approx(1.0)
    assert frame.meta["nm_per_px_y"] == pytest.approx(2.0)


def test_rgb_of_grey_content_keeps_exact_values(tmp_path, synth):
    grey = synth.sem_like((40, 60))
    for name, arr in {"rgb": np.dstack([grey] * 3), "rgba": np.dstack([grey] * 3 + [np.full_like(grey, 255)])}.items():
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, arr, photometric="rgb")
        frame = read_frame(path)
        np.testing.assert_array_equal(frame.pixels, grey)
        assert frame.meta["colour_conversion"] == "grey-rgb"


def test_rgb_colour_content_becomes_luminance(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 50
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    frame = read_frame(path)
    assert frame.pixels.ndim == 2 and frame.pixels.dtype == np.uint8
    assert int(frame.pixels[0, 0]) == round(0.299 * 200 + 0.114 * 50)
    assert frame.meta["colour_conversion"] == "luminance"


def test_multipage_plain_tiff_gives_first_page(tmp_path, synth):
    first, second = synth.sem_like((30, 30), seed=1), synth.sem_like((30, 30), seed=2)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(first)
        tw.write(second)
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.pixels, first)
    assert frame.meta["pages"] == 2


def test_provenance_defaults_and_mtime(tmp_path, synth):
    path = tmp_path / "frame_0042.tif"
    tifffile.imwrite(path, synth.sem_like((32, 32)))
    stamp = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc).timestamp()
    os.utime(path, (stamp, stamp))
    frame = read_frame(path)
    assert frame.frame_id == "frame_0042"
    assert frame.origin == str(path)
    assert frame.stream == "default"
    assert frame.acquired_at == datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    assert frame.meta["acquired_at_source"] == "mtime"
    assert frame.meta["data_bar_rows"] == 0
    assert read_frame(path, stream="s2", frame_id="x").frame_id == "x"
    json.dumps(frame.meta)


def test_tiff_datetime_tag_is_used(tmp_path, synth):
    path = tmp_path / "dated.tif"
    tifffile.imwrite(path, synth.sem_like((32, 32)), datetime="2023:02:03 04:05:06")
    frame = read_frame(path)
    assert frame.acquired_at == datetime(2023, 2, 3, 4, 5, 6).astimezone(timezone.utc)
    assert frame.meta["acquired_at_source"] == "tiff-datetime"


def test_data_bar_is_cropped_from_a_tiff(tmp_path, synth):
    img = synth.burn_bar(synth.sem_like((480, 640)), 40)
    path = tmp_path / "with_bar.tif"
    tifffile.imwrite(path, img)
    frame = read_frame(path)
    assert frame.meta["data_bar_rows"] == 40 and frame.meta["data_bar_source"] == "detected"
    np.testing.assert_array_equal(frame.pixels, img[:440])
    assert frame.meta["source_shape"] == [480, 640]


def test_palette_tiff_with_grey_ramp(tmp_path, synth):
    index = synth.sem_like((30, 40))
    ramp = np.repeat(np.arange(256, dtype=np.uint16)[None] * 257, 3, axis=0)
    ramp[:, 9] = (65535, 0, 0)  # a Zeiss-like overlay colour in an unused entry
    path = tmp_path / "palette.tif"
    tifffile.imwrite(path, index, photometric="palette", colormap=ramp)
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.pixels, index)
    assert frame.meta["colour_conversion"] == "palette-grey"
