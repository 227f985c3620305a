"""EDS per frame in the daemon's path: a .bcf frame under a config with [eds] gets measurements.inclusions."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from copilot.cli import main
from copilot.eds.frame_eds import FrameInclusions, frame_inclusions
from copilot.eds.inclusions import analyse_inclusions
from copilot.reliability.settings import VerdictThresholds
from copilot.reliability.task_checks import inclusion_reasons
from copilot.sim.eds import K_FACTORS, simulate_eds
from copilot.eds.settings import EdsSettings
from tests.readers.conftest import hyperspy_io

PRESET = Path(__file__).resolve().parents[2] / "configs" / "sem-inclusions-eds.toml"


def test_analyze_a_bcf_with_the_inclusions_preset(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    shutil.copy(hyperspy_io("bruker_data/bcf_v2_50x50px.bcf"), acq / "map.bcf")
    out = tmp_path / "out"
    assert main(["analyze", str(acq), "--config", str(PRESET), "--model", str(threshold_model_dir),
                 "--out", str(out)]) == 0
    (doc,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    inc = doc["measurements"]["inclusions"]
    assert inc["eds_shape"] == [50, 50] and inc["counts_per_px"] > 10 and inc["field_area_mm2"] > 0
    assert inc["note"].startswith("semi-quantitative") and inc["unavailable"] is None
    assert [c["name"] for c in inc["classes"]][-1] == "unclassified"
    assert len(inc["inclusions"]) == sum(c["count"] for c in inc["classes"])


def test_frames_without_eds_and_unreadable_eds(tmp_path):
    cfg = EdsSettings()
    assert frame_inclusions(str(tmp_path / "frame.tif"), cfg) is None  # a file kind without EDS
    assert frame_inclusions("socket:cam1/42", cfg) is None
    bad = tmp_path / "broken.bcf"
    bad.write_bytes(b"not a bcf")
    fi = frame_inclusions(str(bad), cfg)
    assert fi.report is None and "broken.bcf" in fi.unavailable


class _FM:
    def __init__(self, fi):
        self.inclusions = fi


@pytest.mark.parametrize("counts, warned", [(8.0, True), (300.0, False)])
def test_verdict_warns_on_low_eds_counts(counts, warned):
    cfg = EdsSettings(k_factors=K_FACTORS)
    cube, truth = simulate_eds((96, 96), 2048, counts, n_inclusions=12, cfg=cfg, rng=1)
    report = analyse_inclusions(cube, truth.labels, cfg)
    fi = FrameInclusions(report, cube.shape, float(cube.counts.sum()) / (96 * 96))
    reasons = [r for _, r in inclusion_reasons(_FM(fi), VerdictThresholds())]
    assert any("EDS counts low" in r for r in reasons) == warned
    assert inclusion_reasons(_FM(FrameInclusions(None, unavailable="x.bcf: no EDS")), VerdictThresholds()) == [
        ("warn", "EDS not analysed: x.bcf: no EDS")]
    assert np.isfinite(fi.counts_per_px)
