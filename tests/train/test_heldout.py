"""Held-out metrics per domain group run the daemon's own path (backend + analysis) on simulated frames."""

import json

import numpy as np
import pytest

from copilot.inference.card import load_card
from copilot.inference.ort_backend import OrtBackend
from copilot.train.heldout import evaluate_backend


def test_particles_groups_through_the_daemon_path(threshold_model_dir):
    card, folder = load_card(threshold_model_dir)
    res = evaluate_backend(OrtBackend(card, folder, threads=1), "particles", per_group=1, size_px=96,
                           groups=("in-domain", "contrast-inversion"), log=None)
    assert list(res) == ["in-domain-haadf", "in-domain-bf-tem", "in-domain", "contrast-inversion"]
    for m in res.values():
        assert 0.0 <= m["object_f1"] <= 1.0 and m["frames"] == 1.0


def test_phases_groups_through_the_daemon_path(threshold_model_dir):
    data = json.loads((threshold_model_dir / "card.json").read_text())
    data.update(task="phases", class_names=["matrix", "second-phase", "pore"], working_nm_per_px=2.0,
                trained_nm_per_px_range=[0.5, 4.0])
    (threshold_model_dir / "card.json").write_text(json.dumps(data))
    card, folder = load_card(threshold_model_dir)
    res = evaluate_backend(OrtBackend(card, folder, threads=1), "phases", per_group=1, size_px=96,
                           groups=("in-domain", "detector"), log=None)
    assert list(res) == ["in-domain", "detector"]
    m = res["detector"]
    assert 0.0 <= m["fraction_error_pp_max_class_mean"] <= 100.0
    assert m["fraction_error_pp_max_class_mean"] == pytest.approx(
        max(m[f"fraction_error_pp_{c}"] for c in ("matrix", "second-phase", "pore")))
    assert np.isfinite(m["miou"])
