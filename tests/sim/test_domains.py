"""Domain-shift groups: every group of every task makes frames, and each changes only its own knob."""

from dataclasses import asdict

import numpy as np
import pytest

from copilot.sim import domains
from copilot.sim.domains import DOMAIN_GROUPS, domain_params, groups_for, sample_domain_frame

KNOBS = {
    "particles": {
        "in-domain": set(),
        "dose": {"dose"},
        "defocus": {"probe_blur_nm"},
        "magnification": {"nm_per_px"},
        "drift": {"drift_shear", "line_jitter_px", "scanline_noise", "scan_wobble_px", "scan_wobble_period_px"},
        "contrast-inversion": set(),
        "charging": {"charging", "charging_decay_px"},
    },
    "phases": {
        "in-domain": set(),
        "dose": {"dose"},
        "defocus": {"probe_blur_nm"},
        "magnification": {"nm_per_px"},
        "drift": {"drift_shear", "line_jitter_px", "scanline_noise", "scan_wobble_px", "scan_wobble_period_px"},
        "charging": {"charging", "charging_decay_px"},
        "detector": {"detector"},
        "etching": {"structure", "etch_depth_nm", "relief_nm", "grain_etch_nm", "groove_width_nm", "phase_roughness_nm"},
    },
}


def test_group_lists():
    assert DOMAIN_GROUPS == groups_for("particles")  # backward compatible
    assert set(groups_for("particles")) == set(KNOBS["particles"])
    assert set(groups_for("phases")) == set(KNOBS["phases"])
    assert groups_for("phases")[0] == groups_for("particles")[0] == "in-domain"
    with pytest.raises(KeyError):
        groups_for("cells")
    with pytest.raises(KeyError):
        sample_domain_frame("detector", np.random.default_rng(0), 64)  # an SEM group asked of particles


@pytest.mark.parametrize("task", ["particles", "phases"])
def test_every_group_makes_a_frame(task):
    for group in groups_for(task):
        f = sample_domain_frame(group, np.random.default_rng(1), size_px=64, task=task)
        assert f.image.shape == f.instances.shape == (64, 64) and f.image.dtype == np.uint16
        assert f.truth["domain"] == group and f.truth["task"] == task
        if task == "phases":
            assert f.class_map is f.instances and f.truth["class_names"] == ["matrix", "second-phase", "pore"]
            assert set(np.unique(f.instances)) <= {0, 1, 2}
        else:
            assert f.class_map is None


@pytest.mark.parametrize("task", ["particles", "phases"])
def test_each_group_changes_only_its_knob(task):
    for group, knobs in KNOBS[task].items():
        for seed in range(4):
            kw = {"modality": "haadf"} if task == "particles" else {}
            base = asdict(domain_params("in-domain", np.random.default_rng(seed), 64, task=task, **kw))
            shifted = asdict(domain_params(group, np.random.default_rng(seed), 64, task=task, **kw))
            changed = {k for k in base if base[k] != shifted[k]}
            assert changed <= knobs, (group, changed - knobs)


def test_knob_values_leave_the_training_range():
    rng = np.random.default_rng(0)
    for _ in range(8):
        assert domain_params("dose", rng, 64).dose <= 6.0
        assert domain_params("defocus", rng, 64).probe_blur_nm >= 0.9
        nm = domain_params("magnification", rng, 64).nm_per_px
        assert nm < 0.1 or nm > 0.5
        d = domain_params("drift", rng, 64)
        assert abs(d.drift_shear) >= 0.05 and d.line_jitter_px >= 1.5 and d.modality == "haadf"
        c = domain_params("charging", rng, 64)
        assert c.charging > 0 and c.modality == "haadf"
        assert domain_params("dose", rng, 64, task="phases").dose <= 5.0
        assert domain_params("defocus", rng, 64, task="phases").probe_blur_nm >= 4.0
        nm = domain_params("magnification", rng, 64, task="phases").nm_per_px
        assert nm < 0.5 or nm > 2.0
        assert domain_params("detector", rng, 64, task="phases").detector == "bse"
        e = domain_params("etching", rng, 64, task="phases")
        assert e.structure == "two-phase" and (e.etch_depth_nm == 0.0 or e.etch_depth_nm >= 60.0)
        assert domain_params("in-domain", rng, 64, task="phases").detector == "se"


def test_in_domain_particles_cover_both_modalities():
    rng = np.random.default_rng(0)
    seen = {sample_domain_frame("in-domain", rng, 48).truth["modality"] for _ in range(12)}
    assert seen == {"haadf", "bf-tem"}
    f = sample_domain_frame("in-domain", rng, 48, modality="bf-tem")
    assert f.truth["modality"] == "bf-tem"


def test_contrast_inversion_inverts_the_same_frame():
    a = sample_domain_frame("in-domain", np.random.default_rng(3), 96)
    b = sample_domain_frame("contrast-inversion", np.random.default_rng(3), 96)
    assert np.array_equal(a.instances, b.instances)
    ai = a.image.astype(np.int64)
    assert np.array_equal(b.image.astype(np.int64), ai.max() + ai.min() - ai)


def test_detector_group_changes_the_image_not_the_truth():
    a = sample_domain_frame("in-domain", np.random.default_rng(5), 96, task="phases")
    b = sample_domain_frame("detector", np.random.default_rng(5), 96, task="phases")
    assert np.array_equal(a.instances, b.instances)
    assert not np.array_equal(a.image, b.image)
    assert domains.PHASE_GROUPS == groups_for("phases")
