"""The Python face: copilot.analyze_image on arrays and signals, copilot.read_results on folders and stores."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import copilot
from copilot.cli import main
from copilot.errors import UserError
from copilot.store import ResultStore
from tests.conftest import disc_image

CENTRES = [(40, 40), (40, 120), (120, 40), (120, 120), (80, 200), (200, 80), (200, 200)]


@pytest.fixture
def image():
    return disc_image((256, 256), CENTRES, 10)  # ECD 20 px


def test_numpy_array_with_a_scale(image, threshold_model_dir):
    doc, particles = copilot.analyze_image(image, nm_per_px=0.5, model=threshold_model_dir)
    assert doc.calibration.nm_per_px == 0.5 and doc.calibration.source == "argument"
    assert len(particles) == len(CENTRES) == doc.measurements.particles.count
    assert particles["ecd_nm"].to_numpy() == pytest.approx(np.full(len(CENTRES), 10.0), abs=0.5)
    assert particles["ecd_px"].to_numpy() == pytest.approx(np.full(len(CENTRES), 20.0), abs=1.0)
    labels = copilot.analyze_image(image, nm_per_px=0.5, model=threshold_model_dir).labels
    assert labels.shape == image.shape and labels.max() == len(CENTRES)


def test_uncalibrated_array_is_measured_in_pixels(image, threshold_model_dir):
    doc, particles = copilot.analyze_image(image, model=threshold_model_dir)
    assert doc.calibration.nm_per_px is None and doc.measurements.length_unit == "px"
    assert particles["ecd_nm"].isna().all() and particles["ecd_px"].median() == pytest.approx(20.0, abs=1.0)


def test_rosettasciio_signal_brings_its_calibration(image, threshold_model_dir, tmp_path):
    from rsciio.tiff import file_reader, file_writer

    axes = [{"size": n, "name": name, "scale": 0.0005, "offset": 0.0, "units": "µm", "navigate": False}
            for n, name in zip(image.shape, "yx")]
    file_writer(str(tmp_path / "frame.tif"), {"data": image, "axes": axes, "metadata": {}, "original_metadata": {}})
    signals = file_reader(str(tmp_path / "frame.tif"))
    doc, particles = copilot.analyze_image(signals, model=threshold_model_dir)
    assert doc.calibration.nm_per_px == pytest.approx(0.5) and doc.calibration.source == "signal axes"
    assert particles["ecd_nm"].median() == pytest.approx(10.0, abs=0.5)
    signals[0]["axes"][1]["units"] = None  # a scale without a unit is no calibration
    assert copilot.analyze_image(signals, model=threshold_model_dir).document.calibration.nm_per_px is None


def test_hyperspy_signal_brings_its_calibration(image, threshold_model_dir):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal2D(image)
    for axis in s.axes_manager.signal_axes:
        axis.scale, axis.units = 0.0005, "µm"
    doc, particles = copilot.analyze_image(s, model=threshold_model_dir)
    assert doc.calibration.nm_per_px == pytest.approx(0.5)
    assert particles["ecd_nm"].median() == pytest.approx(10.0, abs=0.5)
    with pytest.raises(UserError, match="inav"):
        copilot.analyze_image(hs.signals.Signal2D(np.stack([image, image])), model=threshold_model_dir)


def test_bad_images_are_refused_with_a_reason(image, threshold_model_dir):
    with pytest.raises(UserError, match="2-D grey image"):
        copilot.analyze_image(np.zeros((4, 4, 3, 2)), model=threshold_model_dir)
    with pytest.raises(UserError, match="NaN"):
        copilot.analyze_image(np.full((8, 8), np.nan), model=threshold_model_dir)
    with pytest.raises(UserError, match="positive"):
        copilot.analyze_image(image, nm_per_px=-1, model=threshold_model_dir)


def test_read_results_from_an_analyze_folder_and_from_a_store(image, threshold_model_dir, tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    for i in range(2):
        tifffile.imwrite(acq / f"f{i}.tif", image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "nm"})
    assert main(["analyze", str(acq), "--model", str(threshold_model_dir), "--out", str(tmp_path / "out")]) == 0
    frames, particles = copilot.read_results(tmp_path / "out")
    assert list(frames["frame_id"]) == ["f0", "f1"] and list(frames["count"]) == [len(CENTRES)] * 2
    assert len(particles) == 2 * len(CENTRES) and str(frames["acquired_at"].dtype).startswith("datetime64")

    doc, _ = copilot.analyze_image(image, nm_per_px=0.5, model=threshold_model_dir)
    with ResultStore(tmp_path / "state" / "results.sqlite") as store:
        store.record_result(doc)
    for where in (tmp_path / "state", tmp_path / "state" / "results.sqlite"):
        res = copilot.read_results(where)
        assert len(res.frames) == 1 and len(res.particles) == len(CENTRES) and res.documents[0] == doc
    with pytest.raises(UserError, match="results.jsonl"):
        copilot.read_results(tmp_path)
    (tmp_path / "other.sqlite").write_bytes(b"not a database at all, " * 100)
    with pytest.raises(UserError, match="not a co-pilot results store"):
        copilot.read_results(tmp_path / "other.sqlite")


def test_engine_keyword_is_the_deprecated_name_of_backend(image, threshold_model_dir):
    with pytest.warns(DeprecationWarning, match=r"analyze_image\(engine=...\) is now analyze_image\(backend=...\)"):
        doc, _ = copilot.analyze_image(image, nm_per_px=0.5, model=threshold_model_dir, engine="onnxruntime-cpu")
    assert doc.model.backend == doc.model.engine == "onnxruntime-cpu"
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="unknown backend 'no-such-backend'"):
        copilot.analyze_image(image, model=threshold_model_dir, engine="no-such-backend")  # the value is used
    with pytest.warns(DeprecationWarning), pytest.raises(UserError, match="engine='tensorrt' and backend="):
        copilot.analyze_image(image, model=threshold_model_dir, engine="tensorrt", backend="onnxruntime-cpu")
