"""The data-bar detector finds drawn bars of each vendor style and never crops an imaged frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from copilot.readers import detect_data_bar


@pytest.mark.parametrize("style", ["zeiss", "fei"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("rows", [20, 48, 90])
def test_finds_vendor_style_bars(synth, style, dtype, rows):
    img = synth.burn_bar(synth.sem_like((480, 640), dtype=dtype), rows, style=style)
    assert detect_data_bar(img) == rows


def test_stray_scan_line_under_a_zeiss_bar_is_cropped_with_it(synth):
    img = synth.burn_bar(synth.sem_like((384, 512)), 34)
    img[-1] = synth.sem_like((1, 512), seed=9)[0]  # Zeiss leaves a last imaged line below the bar
    assert detect_data_bar(img) == 34


def _plain_images(synth):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:400, :500]
    discs = np.full((400, 500), 100, np.uint16)  # noise-free two-level particles, bottom ones included
    for cy, cx in [(60, 80), (200, 250), (380, 420), (395, 100)]:
        discs[(yy - cy) ** 2 + (xx - cx) ** 2 <= 30**2] = 1000
    clipped = synth.sem_like((400, 500))  # vacuum clipped to black with an irregular edge at the bottom
    edge = 330 + (20 * np.sin(xx[0] / 25)).astype(int)
    clipped[yy >= edge[None, :]] = 0
    saturated = synth.sem_like((400, 500))
    saturated[360:] = 255  # featureless saturated band: no text, not a bar
    return {
        "noise-uint8": synth.sem_like((400, 500)),
        "noise-uint16": synth.sem_like((400, 500), dtype=np.uint16),
        "noise-float": synth.sem_like((400, 500), dtype=np.float32),
        "gradient": np.tile(np.linspace(0, 255, 500), (400, 1)).astype(np.uint8),
        "vertical-gradient": np.tile(np.linspace(0, 255, 400)[:, None], (1, 500)).astype(np.uint8),
        "flat": np.full((400, 500), 77, np.uint8),
        "low-noise": np.clip(rng.normal(128, 0.6, (400, 500)), 0, 255).astype(np.uint8),
        "discs": discs,
        "clipped-vacuum": clipped,
        "saturated-band": saturated,
        "tiny": np.zeros((8, 8), np.uint8),
    }


@pytest.mark.parametrize("name", [
    "noise-uint8", "noise-uint16", "noise-float", "gradient", "vertical-gradient", "flat", "low-noise", "discs",
    "clipped-vacuum", "saturated-band", "tiny",
])
def test_plain_images_are_not_cropped(synth, name):
    assert detect_data_bar(_plain_images(synth)[name]) == 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    sigma=st.floats(0.5, 12),
    noise=st.floats(0.0, 0.2),
    height=st.integers(32, 300),
    width=st.integers(32, 300),
)
def test_random_textured_images_are_never_cropped(seed, sigma, noise, height, width):
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((height, width)), sigma)
    base = (base - base.min()) / (np.ptp(base) + 1e-12)
    img = np.clip(0.1 + 0.8 * base + rng.normal(0, noise, base.shape), 0, 1)
    assert detect_data_bar((img * 65535).astype(np.uint16)) == 0
