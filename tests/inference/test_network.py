"""The shared backend path: fast exact resampling, balanced CPU tiles, batched tiles."""

import numpy as np
import pytest
from skimage.transform import resize

from copilot.inference.card import load_card
from copilot.inference.network import balanced_tile_px
from copilot.inference.ort_backend import OrtBackend
from copilot.inference.preprocess import resample


@pytest.mark.parametrize("shape,scale", [((512, 512), 2.5), ((300, 200), 2.0), ((257, 513), 1.37), ((128, 96), 4.0)])
def test_fast_downsampling_equals_skimage_resize(shape, scale):
    """The daemon must feed the network what training fed it (copilot.train.data uses skimage resize)."""
    img = (np.random.default_rng(0).random(shape) * 30000).astype(np.float32)
    out, s = resample(img, scale)
    ref = resize(img, out.shape, order=1, anti_aliasing=True, preserve_range=True)
    assert out.dtype == np.float32 and s == pytest.approx(shape[0] / out.shape[0])
    np.testing.assert_allclose(out, ref, rtol=0, atol=30000 * 1e-6)


def test_upsampling_still_works():
    img = np.random.default_rng(0).random((50, 40)).astype(np.float32)
    out, s = resample(img, 0.5)
    assert out.shape == (100, 80) and s == 0.5


@pytest.mark.parametrize("h,w,max_px", [(1638, 1638, 1536), (3000, 1000, 1536), (256, 256, 64), (700, 90, 512)])
def test_balanced_tiles_cover_with_few_tiles(h, w, max_px):
    from copilot.inference.tiling import tile_grid

    t = balanced_tile_px(h, w, max_px, 32 if max_px > 64 else 16, 8)
    assert t % 8 == 0 and t <= max_px + 8
    tiles = tile_grid(h, w, t, 32 if max_px > 64 else 16)
    naive = tile_grid(h, w, max_px, 32 if max_px > 64 else 16)
    assert len(tiles) <= len(naive)
    assert sum(x.h * x.w for x in tiles) <= sum(x.h * x.w for x in naive)


def test_balanced_and_batched_tiles_match_the_whole_frame(threshold_model_dir, disc_frame):
    card, folder = load_card(threshold_model_dir)
    whole = OrtBackend(card, folder, max_whole_px=4096).segment(disc_frame)
    for kwargs in ({"max_whole_px": 100}, {"max_whole_px": 64, "tile_px": 64, "tile_batch": 4}):
        tiled = OrtBackend(card, folder, **kwargs).segment(disc_frame)
        np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=1e-5)
        np.testing.assert_allclose(tiled.embedding, whole.embedding, rtol=0.05)


def test_unet_batched_tiles_match_single_tiles(unet_model_dir):
    card, folder = load_card(unet_model_dir)
    img = np.random.default_rng(2).standard_normal((150, 170)).astype(np.float32)
    one = OrtBackend(card, folder, max_whole_px=64, tile_px=64).infer(img)
    four = OrtBackend(card, folder, max_whole_px=64, tile_px=64, tile_batch=4).infer(img)
    np.testing.assert_allclose(one[0], four[0], atol=1e-5)
    np.testing.assert_allclose(one[1], four[1], atol=1e-5)


def _grains_backend(native: bool) -> OrtBackend:
    card, folder = load_card("grains-sem")
    return OrtBackend(card.model_copy(update={"average_native_scale": native}), folder, threads=1)


def test_native_pass_applies_only_to_upsampled_frames_inside_the_trained_range():
    from copilot.frame import Frame
    from copilot.inference.network import wants_native_pass

    card, _ = load_card("grains-sem")  # works at 250 nm/px, trained on 125-500 nm/px, asks for the native pass
    assert card.average_native_scale
    frame = lambda nm: Frame(np.zeros((64, 64), np.uint16), nm, stream="s", frame_id="f", origin="mem")  # noqa: E731
    assert wants_native_pass(card, frame(400.0), 250 / 400)
    assert not wants_native_pass(card, frame(250.0), 1.0)  # at the working scale
    assert not wants_native_pass(card, frame(200.0), 1.25)  # finer: downsampled, noise already averaged
    assert not wants_native_pass(card, frame(600.0), 0.5)  # coarser than anything trained
    assert not wants_native_pass(card, frame(None), 1.0)
    assert not wants_native_pass(card.model_copy(update={"average_native_scale": False}), frame(400.0), 0.625)


def test_native_pass_averages_the_upsampled_and_the_native_probabilities():
    from copilot.frame import Frame
    from copilot.sim.grain_frames import random_grain_params, simulate_grains

    sim = simulate_grains(random_grain_params(np.random.default_rng(3), 160), 3)
    coarse = Frame(sim.image, 400.0, stream="s", frame_id="f", origin="mem")
    on, off = _grains_backend(True), _grains_backend(False)
    seg, plain = on.segment(coarse), off.segment(coarse)
    assert seg.frame_px_per_px == plain.frame_px_per_px == pytest.approx(160 / 256)
    img, _ = off.prepare(coarse, 1.0)
    native, _ = off.infer(img)
    up = np.stack([resize(c, plain.probabilities.shape[1:], order=1, mode="edge") for c in native])
    np.testing.assert_allclose(seg.probabilities, (plain.probabilities + up) / 2, atol=1e-6)
    assert not np.allclose(seg.probabilities, plain.probabilities, atol=1e-3)
    np.testing.assert_allclose(seg.probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(seg.network_input, plain.network_input)  # reliability reads the working grid
    at_scale = Frame(sim.image, 250.0, stream="s", frame_id="f", origin="mem")
    np.testing.assert_array_equal(on.segment(at_scale).probabilities, off.segment(at_scale).probabilities)
