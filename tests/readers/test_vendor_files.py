"""Real instrument files (from PyPI packages, cached under .cache/vendor) load with the right nm/px."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from copilot.errors import UnreadableFrame
from copilot.readers import detect_data_bar, read_frame

pytestmark = pytest.mark.network


def test_aquami_zeiss_sample_calibration_and_data_bar(vendor_file):
    path = vendor_file("aquami", "1.1.0", "aquami/micrographs/Sample.tif")
    frame = read_frame(path, stream="sem-1")

    assert frame.nm_per_px == pytest.approx(0.543, abs=1e-4)
    assert frame.calibration_source == "zeiss"
    assert frame.meta["data_bar_rows"] == 77 and frame.meta["data_bar_source"] == "detected"
    assert frame.shape == (768 - 77, 1024)
    assert detect_data_bar(frame.pixels) == 0  # nothing bar-like left
    assert frame.pixels[-1].std() > 10  # last kept row is imaged, not the bar's black rule
    assert frame.meta["vendor"] == "zeiss"
    assert frame.meta["hv_v"] == 20000.0
    assert frame.meta["magnification"] == 500000.0
    assert frame.meta["detector"] == "InLens"
    assert frame.meta["dwell_s"] == pytest.approx(100e-9)
    assert frame.acquired_at.tzinfo is not None
    assert frame.acquired_at == datetime(2016, 7, 11, 15, 54, 11).astimezone(timezone.utc)
    assert frame.frame_id == "Sample" and frame.origin == str(path) and frame.stream == "sem-1"
    json.dumps(frame.meta)


@pytest.mark.parametrize(
    "member, nm, bar_rows",
    [("test_tiff_Zeiss_SEM_512pix.tif", 5.825, 34), ("test_tiff_Zeiss_SEM_1k.tif", 2615.0, 77)],
)
def test_zeiss_tiffs_from_hyperspy(member, nm, bar_rows, hyperspy_file):
    frame = read_frame(hyperspy_file(f"tiff_files/tiff_Zeiss_SEM.zip/{member}"))
    assert frame.nm_per_px == pytest.approx(nm, rel=1e-6)
    assert frame.calibration_source == "zeiss"
    assert frame.meta["data_bar_rows"] == bar_rows


@pytest.mark.parametrize("member, dtype", [("FEI-Helios-Ebeam-8bits.tif", np.uint8),
                                           ("FEI-Helios-Ebeam-16bits.tif", np.uint16)])
def test_fei_helios_pixel_width_and_metadata_bar(member, dtype, hyperspy_file):
    frame = read_frame(hyperspy_file(f"tiff_files/tiff_FEI_Helios.zip/{member}"))
    assert frame.nm_per_px == pytest.approx(3372.4, rel=1e-6)  # [Scan] PixelWidth 3.3724e-06 m
    assert frame.calibration_source == "fei"
    assert frame.pixels.dtype == dtype
    # [Image] ResolutionY = 442 of 471 rows: the bar is known from metadata although the image above is black
    assert frame.meta["data_bar_rows"] == 29 and frame.meta["data_bar_source"] == "fei-resolution-y"
    assert frame.shape == (442, 512)
    assert frame.meta["hv_v"] == 5000 and frame.meta["magnification"] == pytest.approx(120, rel=1e-3)
    assert frame.meta["detector"] == "ETD SE" and frame.meta["dwell_s"] == pytest.approx(1e-5)
    assert frame.meta["instrument"].startswith("Helios")
    assert frame.acquired_at == datetime(2016, 6, 13, 17, 6, 40).astimezone(timezone.utc)


def test_dm3_multi_signal_takes_the_haadf_image(hyperspy_file):
    frame = read_frame(hyperspy_file("dm3_2D_data/multi_signal.dm3"))
    assert frame.meta["signal"] == "HAADF"
    assert set(frame.meta["signals"]) == {"HAADF", "Plot"}
    assert frame.shape == (512, 512)
    assert frame.nm_per_px == pytest.approx(0.0177516, rel=1e-5)
    assert frame.calibration_source == "rosettasciio"
    assert frame.meta["data_bar_rows"] == 0
    # DigitalMicrograph keeps these in original_metadata; the reader applies RosettaSciIO's mapping
    assert frame.meta["hv_v"] == 300000.0 and frame.meta["acquired_at_source"] == "dm3"
    assert frame.acquired_at == datetime(2019, 12, 10, 15, 32, 41).astimezone(timezone.utc)


def test_dm3_stem_image_in_nm(hyperspy_file):
    frame = read_frame(hyperspy_file("dm3_2D_data/test_STEM_image.dm3"))
    assert frame.shape == (68, 68)
    assert frame.nm_per_px == pytest.approx(0.248538, rel=1e-5)


def test_dm4_image_in_micrometres_is_converted(hyperspy_file):
    frame = read_frame(hyperspy_file("dm4_2D_data/test-MonarcCL_mono-image.dm4"))
    assert frame.meta["axis_units"] == "µm"
    assert frame.nm_per_px == pytest.approx(18325.35, rel=1e-5)


def test_dm_without_calibration_and_diffraction_are_uncalibrated(hyperspy_file):
    plain = read_frame(hyperspy_file("dm4_2D_data/test-1.dm4"))
    assert plain.nm_per_px is None and plain.calibration_source == "none"
    diffraction = read_frame(hyperspy_file("dm3_2D_data/test_diffraction_pattern.dm3"))
    assert diffraction.nm_per_px is None and diffraction.meta["axis_units"] == "1/nm"


def test_dm_spectrum_and_spectrum_image_are_refused(hyperspy_file):
    with pytest.raises(UnreadableFrame, match="no 2-D image"):
        read_frame(hyperspy_file("dm3_1D_data/test-1.dm3"))
    with pytest.raises(UnreadableFrame, match="EELS"):
        read_frame(hyperspy_file("dm4_3D_data/EELS_SI.dm4"))


@pytest.mark.parametrize("member, nm, shape", [("FEI_old/64x64_TEM_images_acquire_1.ser", 6.2818336, (64, 64)),
                                               ("FEI_new/128x128_TEM_acquire-sum1_1.ser", 21.479318, (128, 128))])
def test_ser_images(member, nm, shape, hyperspy_file):
    frame = read_frame(hyperspy_file(member))
    assert frame.shape == shape
    assert frame.nm_per_px == pytest.approx(nm, rel=1e-6)


def test_ser_stack_gives_first_frame_and_spectrum_image_is_refused(hyperspy_file):
    stack = read_frame(hyperspy_file("FEI_old/64x64x5_TEM_preview_1.ser"))
    assert stack.shape == (64, 64) and stack.meta["frames"] == 5
    with pytest.raises(UnreadableFrame, match="no 2-D image"):
        read_frame(hyperspy_file("FEI_old/16x16-spectrum_image-5x5x1024_1.ser"))


def test_bcf_takes_the_sem_image_not_the_spectrum(hyperspy_file):
    frame = read_frame(hyperspy_file("bruker_data/bcf_v2_50x50px.bcf"))
    assert frame.shape == (50, 50)
    assert frame.nm_per_px == pytest.approx(12.7305873, rel=1e-6)
    assert frame.meta["nm_per_px_y"] == pytest.approx(11.808081, rel=1e-6)  # Bruker pixels need not be square
    assert frame.meta["hv_v"] == 20000.0
    stem = read_frame(hyperspy_file("bruker_data/test_TEM.bcf"))
    assert stem.meta["signal"] == "HAADF" and stem.nm_per_px == pytest.approx(0.7710048, rel=1e-6)


def test_bcf_without_signature_is_refused(hyperspy_file):
    with pytest.raises(UnreadableFrame, match="signature"):
        read_frame(hyperspy_file("bruker_data/Nope.bcf"))


def test_emd_velox_haadf_image(hyperspy_file):
    pytest.importorskip("h5py", reason="EMD needs h5py (add it to the project's dependencies)")
    frame = read_frame(hyperspy_file("emd_files/fei_emd_files.zip/fei_emd_image.emd"))
    assert frame.meta["signal"] == "HAADF" and frame.shape == (512, 512)
    assert frame.nm_per_px == pytest.approx(5.3024148, rel=1e-6)
    assert frame.acquired_at == datetime(2017, 3, 6, 9, 56, 41, tzinfo=timezone.utc)
    assert frame.meta["acquired_at_source"] == "emd"
    assert frame.meta["hv_v"] == 200000.0 and frame.meta["detector"] == "HAADF"
    assert frame.meta["dwell_s"] == pytest.approx(2e-5)


def test_emd_velox_spectrum_image_file_gives_its_haadf(hyperspy_file):
    pytest.importorskip("h5py", reason="EMD needs h5py (add it to the project's dependencies)")
    frame = read_frame(hyperspy_file("emd_files/fei_emd_files.zip/fei_SI_SuperX-HAADF_10frames_10x50.emd"))
    assert frame.meta["signal"] == "HAADF"
    assert frame.shape == (50, 10)
    assert frame.nm_per_px == pytest.approx(1.2340096, rel=1e-6)


def test_emd_camera_image_and_multi_signal_without_haadf(hyperspy_file):
    pytest.importorskip("h5py", reason="EMD needs h5py (add it to the project's dependencies)")
    ceta = read_frame(hyperspy_file("emd_files/fei_emd_files.zip/1532 Camera Ceta.emd"))
    assert ceta.meta["signal"] == "Ceta" and ceta.nm_per_px == pytest.approx(0.2155734, rel=1e-6)
    dpc = read_frame(hyperspy_file("emd_files/fei_example_dpc_titles.emd"))
    assert dpc.meta["signal"].startswith("DF4")  # a detector image, never the complex DPC signal
    assert dpc.nm_per_px == pytest.approx(0.0996199, rel=1e-5)  # 99.6 pm
