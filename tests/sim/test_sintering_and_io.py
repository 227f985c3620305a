import threading
from datetime import datetime, timezone

import numpy as np
import pytest
import tifffile

from copilot.sim import SimParams, SinteringRun, simulate_frame, write_tiff
from copilot.sim.microscope import run_microscope


def test_tiff_calibration_reads_back(tmp_path):
    f = simulate_frame(SimParams(size_px=128, nm_per_px=0.237), 0)
    t = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    path = write_tiff(tmp_path / "a.tif", f, acquired_at=t)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]  # no temporary left behind
    with tifffile.TiffFile(path) as tf:
        assert np.array_equal(tf.asarray(), f.image)
        assert tf.imagej_metadata["unit"] == "nm"
        num, den = tf.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.237, rel=1e-5)  # nm per px
        num, den = tf.pages[0].tags["YResolution"].value
        assert den / num == pytest.approx(0.237, rel=1e-5)
        assert tf.pages[0].tags["DateTime"].value == "2025:03:04 05:06:07"


def _mean_radius_nm(frame):
    lab = frame.instances
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    areas = np.bincount(lab.ravel())
    ids = np.setdiff1d(np.nonzero(areas)[0], np.append(edge, 0))
    return float(np.mean(np.sqrt(areas[ids] / np.pi))) * frame.nm_per_px, set(ids.tolist())


def test_sintering_growth_rate_is_recoverable():
    rate = 0.5  # nm/min
    p = SimParams(size_px=512, nm_per_px=0.2, d50_nm=5.0, area_fraction=0.15, touching_fraction=0.0)
    run = SinteringRun(seed=3, params=p, growth_nm_per_min=rate, interval_s=60.0, duration_s=300.0,
                       drift_nm_per_s=(0.0, 0.0))
    frames = list(run.frames(6))
    assert [tf.t_s for tf in frames] == [0, 60, 120, 180, 240, 300]
    assert all(b.acquired_at > a.acquired_at for a, b in zip(frames, frames[1:]))
    # follow the same particles (interior in every frame)
    common = set.intersection(*[_mean_radius_nm(tf.frame)[1] for tf in frames])
    assert len(common) >= 10
    t_min, r = [], []
    for tf in frames:
        lab = tf.frame.instances
        areas = np.bincount(lab.ravel())
        ids = np.array(sorted(common))
        r.append(float(np.mean(np.sqrt(areas[ids] / np.pi))) * p.nm_per_px)
        t_min.append(tf.t_s / 60)
    slope = np.polyfit(t_min, r, 1)[0]
    assert slope == pytest.approx(rate, rel=0.1)
    # the truth says the same
    assert frames[-1].frame.truth["radius_delta_nm"] == pytest.approx(rate * 5)


def test_sintering_drift_moves_the_field():
    p = SimParams(size_px=128, nm_per_px=0.25, touching_fraction=0.0, area_fraction=0.15)
    run = SinteringRun(seed=1, params=p, growth_nm_per_min=0.0, interval_s=100.0, duration_s=200.0,
                       drift_nm_per_s=(0.02, 0.0))
    a, b = run.frame_at(0.0), run.frame_at(200.0)
    assert b.truth["drift_px"] == (16, 0)
    # content moved left by 16 px: the masks line up after shifting back
    assert np.mean((a.instances[:, 16:] > 0) == (b.instances[:, :-16] > 0)) > 0.97


def test_run_microscope_writes_frames(tmp_path):
    seen = []
    paths = run_microscope(tmp_path, n_frames=3, interval_s=0.01, seed=0, size_px=96,
                           on_frame=lambda path, f: seen.append(path))
    assert [p.name for p in paths] == ["frame_00000.tif", "frame_00001.tif", "frame_00002.tif"]
    assert seen == paths
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]


def test_run_microscope_stops_on_event(tmp_path):
    stop = threading.Event()
    stop.set()
    assert run_microscope(tmp_path, n_frames=5, interval_s=0.01, size_px=64, stop=stop) == []
