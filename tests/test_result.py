"""The result's binary parts: the uncertainty map as 8-bit levels (0 certain … 255 uniform), rounded half to even."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from copilot.analysis import measure
from copilot.reliability.score import Assessor
from copilot.result import Outcome, build_result

sys.path.insert(0, str(Path(__file__).resolve().parent / "analysis"))
from test_particles import discs, segmentation_from_instances  # noqa: E402


def test_uncertainty_part_is_the_clipped_map_in_255_levels():
    fm = measure(segmentation_from_instances(discs((48, 64), [(20, 20), (30, 45)], 6), 0.5))
    rel, verdict, _ = Assessor().assess(fm)
    u = np.linspace(-0.1, 1.1, 48 * 64, dtype=np.float32).reshape(48, 64)
    u[0, :5] = np.array([0.5, 1.5, 2.5, 254.5, 127.5], np.float32) / 255  # halves: to the even level
    result = build_result(Outcome(fm, replace(rel, uncertainty=u), verdict), {"total": 1.0})
    part = result.parts["uncertainty"]
    assert part.dtype == np.uint8 and part.shape == u.shape
    np.testing.assert_array_equal(part, np.round(np.clip(u, 0, 1) * 255).astype(np.uint8))
    assert part.min() == 0 and part.max() == 255
    assert u.min() < 0  # the map itself is left as it was
