"""Resampling bounds in the backend: enlargement beyond max_upsample is refused before any work, a working grid above
max_working_px is resampled coarser (and says so through frame_px_per_px), and the block-built resampling operator
matches skimage's resize."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

from copilot.errors import RefusedFrame
from copilot.frame import Frame
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.preprocess import resample
from tests.conftest import disc_image


def frame(shape, nm_per_px):
    return Frame(disc_image(shape, [(shape[0] // 2, shape[1] // 2)], 10), nm_per_px=nm_per_px, stream="t",
                 frame_id="f", origin="mem")


def test_enlargement_beyond_max_upsample_is_refused(threshold_model_dir):
    backend = OrtBackend.from_name(threshold_model_dir)
    f = frame((128, 128), 10.0)  # the card would want 20× (0.5 nm/px): the scale choice never enlarges beyond 2×
    seg = backend.segment(f)
    assert seg.frame_px_per_px == pytest.approx(0.5) and seg.probabilities.shape[1:] == (256, 256)
    with pytest.raises(RefusedFrame, match=r"20\.0× enlargement to 2560×2560 px, more than limits.max_upsample = 4"):
        backend.prepare(f, 0.05)  # asked for directly, the input bound refuses it with the reason
    seg = backend.segment(frame((128, 128), 1.0))  # 2× enlargement: within the bound
    assert seg.frame_px_per_px == pytest.approx(0.5)


def test_working_grid_beyond_the_bound_is_resampled_coarser(threshold_model_dir):
    backend = OrtBackend.from_name(threshold_model_dir)
    backend.max_working_px = 256 * 256
    seg = backend.segment(frame((512, 512), None))  # uncalibrated: would run at 512² on the grid
    assert seg.probabilities.shape[1:] == (256, 256) and seg.frame_px_per_px == pytest.approx(2.0)


@pytest.mark.parametrize("shape", [(700, 300), (1000, 999)])
def test_block_built_downsampling_matches_resize(shape):
    img = np.random.default_rng(0).random(shape, dtype=np.float32) * 1000
    got, _ = resample(img, 2.7)
    want = resize(img, got.shape, order=1, anti_aliasing=True, preserve_range=True)
    assert np.abs(got - want).max() < 1e-2
