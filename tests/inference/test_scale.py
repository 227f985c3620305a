"""The working scale follows the particles (copilot.inference.scale), without a network: synthetic probabilities."""

import numpy as np
import pytest

from copilot.frame import Frame
from copilot.inference.card import load_card
from copilot.inference.scale import (COARSE_PX, MAX_UPSAMPLING, TARGET_PX, ScalePolicy, frame_px_per_px, median_particle_px,
                                     outside_trained_scale)
from copilot.inference.segmentation import Segmentation

CLASSES = ("background", "particle", "boundary")


def probs_with_discs(shape, radius_px, n=9):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    fg = np.zeros(shape, bool)
    step = shape[0] // (int(np.sqrt(n)) + 1)
    for i in range(1, int(np.sqrt(n)) + 1):
        for j in range(1, int(np.sqrt(n)) + 1):
            fg |= (yy - i * step) ** 2 + (xx - j * step) ** 2 < radius_px**2
    p = np.stack([~fg, fg, np.zeros(shape, bool)]).astype(np.float32)
    return p


@pytest.fixture(scope="module")
def card():
    return load_card("particles-stem")[0]


def test_median_particle_size_on_the_grid():
    med, n = median_particle_px(probs_with_discs((200, 200), 10), CLASSES)
    assert n == 9 and med == pytest.approx(20, rel=0.05)


def test_never_more_than_twice_upsampled(card):
    frame = Frame(np.zeros((256, 256), np.uint16), 2.0, stream="s", frame_id="0", origin="m")
    assert frame_px_per_px(frame, 0.1) == pytest.approx(1 / MAX_UPSAMPLING)


def test_large_particles_ask_for_a_coarser_scale_and_the_stream_remembers(card):
    policy = ScalePolicy(card)
    frame = Frame(np.zeros((1024, 1024), np.uint16), 0.5, stream="s", frame_id="0", origin="m")
    factor, why = policy.first_guess(frame)
    assert factor == pytest.approx(1.0) and "card" in why
    better, med = policy.review(frame, factor, probs_with_discs((1024, 1024), 40))  # 80-px particles
    assert med == pytest.approx(80, rel=0.05) and better == pytest.approx(80 / COARSE_PX, rel=0.05)
    again, why = policy.first_guess(frame)  # next frame of the stream at the same nm/px
    assert again == pytest.approx(better, rel=0.01) and "previous" in why
    other = Frame(frame.pixels, 0.5, stream="other", frame_id="0", origin="m")
    assert policy.first_guess(other)[0] == pytest.approx(1.0)


def test_a_failed_frame_is_forgotten_and_a_later_one_is_not(card):
    policy = ScalePolicy(card)
    first = Frame(np.zeros((1024, 1024), np.uint16), 0.5, stream="s", frame_id="0", origin="m")
    second = Frame(first.pixels, 0.5, stream="s", frame_id="1", origin="m")
    policy.review(first, 1.0, probs_with_discs((1024, 1024), 40))
    policy.forget("s", "0")  # its verdict failed
    assert "card" in policy.first_guess(second)[1]
    policy.review(first, 1.0, probs_with_discs((1024, 1024), 40))
    policy.review(second, 1.0, probs_with_discs((1024, 1024), 40))
    policy.forget("s", "0")  # a backlog: frame 1 has already set the stream's memory, which stays
    assert "previous" in policy.first_guess(second)[1]


def test_particles_in_range_are_left_alone(card):
    policy = ScalePolicy(card)
    frame = Frame(np.zeros((512, 512), np.uint16), 0.25, stream="s", frame_id="0", origin="m")
    assert policy.review(frame, 2.0, probs_with_discs((256, 256), 7))[0] is None


def test_verdict_reason_judges_the_working_grid(card):
    def seg(nm, factor, radius):
        p = probs_with_discs((256, 256), radius)
        frame = Frame(np.zeros((int(256 * factor),) * 2, np.uint16), nm, stream="s", frame_id="0", origin="m")
        return Segmentation(frame, p, np.zeros(64, np.float32), CLASSES, "m", "1", "t", frame_px_per_px=factor)

    assert outside_trained_scale(seg(0.05, 10.0, 8), card) is None  # far finer frame, particles in range
    assert "particles" in outside_trained_scale(seg(0.5, 1.0, 2), card)  # 4-px particles: too small for it


def test_verdict_reads_the_particle_size_the_scale_choice_measured(card):
    """A backend's segmentation carries the median particle size its scale review measured on the same
    probabilities; the verdict uses it instead of labelling them again (NaN: measured, too few particles)."""
    from dataclasses import replace

    from copilot.inference.ort_backend import OrtBackend

    backend = OrtBackend(card, load_card("particles-stem")[1], threads=1)
    yy, xx = np.mgrid[:256, :256]
    pixels = np.full((256, 256), 200.0)
    for cy, cx in [(60, 60), (60, 190), (190, 60), (190, 190), (128, 128)]:
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < 12 ** 2] = 1200.0  # 4.8 nm particles at 0.2 nm/px
    noisy = np.random.default_rng(0).poisson(pixels).astype(np.uint16)
    s = backend.segment(Frame(noisy, 0.2, stream="s", frame_id="0", origin="m"))
    measured, _ = median_particle_px(s.probabilities, CLASSES)
    assert s.particle_px is not None and s.particle_px == measured
    assert outside_trained_scale(s, card) == outside_trained_scale(replace(s, particle_px=None), card)
    tiny = replace(s, particle_px=float(card.trained_particle_px[0]) / 2)  # what the verdict reads
    assert "particles" in outside_trained_scale(tiny, card)
    assert outside_trained_scale(replace(s, particle_px=float("nan")), card) is None
    blank = backend.segment(Frame(np.random.default_rng(1).poisson(np.full((256, 256), 200.0)).astype(np.uint16),
                                  0.2, stream="b", frame_id="0", origin="m"))
    assert blank.particle_px is not None and np.isnan(blank.particle_px)
    uncalibrated = backend.segment(Frame(noisy, None, stream="u", frame_id="0", origin="m"))
    assert uncalibrated.particle_px is None


def test_small_particles_ask_for_a_finer_scale_within_twice_upsampled(card):
    """6-px particles at the card's scale (3 nm at 0.5 nm/px) are too few pixels to size to a few %: the frame runs
    again finer (here capped at 2× upsampling); 8-px ones (in the trained range) stay at the card's scale."""
    policy = ScalePolicy(card)
    frame = Frame(np.zeros((512, 512), np.uint16), 0.5, stream="s", frame_id="0", origin="m")
    better, med = policy.review(frame, 1.0, probs_with_discs((512, 512), 3))
    assert med == pytest.approx(6, rel=0.1) and better == pytest.approx(1 / MAX_UPSAMPLING)
    assert 6 / TARGET_PX < better  # capped: the target alone would upsample more
    assert ScalePolicy(card).review(frame, 1.0, probs_with_discs((512, 512), 4))[0] is None
