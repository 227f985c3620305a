"""copilot.adapt: a few real adaptation steps on the shipped particle model, the model version it writes, the
label-free checks, promotion, rollback and the hot swap. Never a full adaptation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from copilot.adapt.checks import CheckLimits, decide  # noqa: E402
from copilot.adapt.engine_folder import adapted_version  # noqa: E402
from copilot.adapt.promote import promote, rollback  # noqa: E402
from copilot.adapt.run import AdaptOptions, adapt_engine  # noqa: E402
from copilot.errors import UserError  # noqa: E402
from copilot.frame import Frame  # noqa: E402
from copilot.inference.card import load_card  # noqa: E402
from copilot.inference.ort_backend import OrtBackend  # noqa: E402
from copilot.sim.domains import sample_domain_frame  # noqa: E402


def dose_frames(n: int = 3, size: int = 256, seed: int = 3) -> list[Frame]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = sample_domain_frame("dose", rng, size)
        out.append(Frame(s.image, s.nm_per_px, stream="t", frame_id=str(i), origin=f"sim:{i}"))
    return out


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """The user's data folder (XDG_DATA_HOME) for this module: promotions land here, not in the real one."""
    root = tmp_path_factory.mktemp("xdg")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_DATA_HOME", str(root))
    yield root / "copilot" / "engines"
    mp.undo()


@pytest.fixture(scope="module")
def adapted(user_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapted") / "model"
    outcome = adapt_engine("particles-stem", dose_frames(), out, "test frames",
                           AdaptOptions(method="selftrain", steps=2, promote=False), command="pytest",
                           log=lambda *a: None)
    return outcome


def test_adapted_engine_is_a_new_version_with_lineage(adapted):
    card, folder = load_card(adapted.folder)  # valid card, sha256 matches model.onnx
    parent, _ = load_card("particles-stem")
    assert card.name == parent.name and card.version != parent.version
    assert card.version.startswith(parent.version.split("+")[0] + "+selftrain.")
    assert card.lineage.parent_version == parent.version and card.lineage.method == "selftrain"
    assert card.lineage.frames == 3 and card.lineage.frames_source == "test frames" and card.lineage.adapted_at
    assert card.reliability_regressor and (folder / card.reliability_regressor).is_file()
    assert len(card.embedding_reference.mean) == card.outputs.embedding_dim
    record = json.loads((folder / "adaptation.json").read_text())
    assert record["promoted"] is False and set(record["checks"]) >= {"view_agreement", "no_collapse"}
    seg = OrtBackend(card, folder).segment(dose_frames(1)[0])
    assert seg.model_version == card.version and seg.probabilities.shape[0] == 3


def test_a_model_no_better_than_its_parent_is_not_promoted():
    card, folder = load_card("particles-stem")
    d = decide(OrtBackend(card, folder), OrtBackend(card, folder), dose_frames(2))
    assert not d.promote and any("predicted F1 not up by more than 0.03" in r for r in d.reasons)
    assert d.adapted["confident_agreement"] == 1.0 and d.checks["no_collapse"]
    # the margin is what this check weighs: a negative one lets the very same model through it
    loose = decide(OrtBackend(card, folder), OrtBackend(card, folder), dose_frames(2), CheckLimits(min_f1_gain=-0.01))
    assert loose.checks["predicted_f1"] and not d.checks["predicted_f1"]


class GrownParticles:
    """A backend whose particles come out a working pixel wider all round than its parent's (background
    probability eroded by a 3 × 3 minimum, renormalized): a self-trained model drifted outwards, exaggerated."""

    def __init__(self, parent):
        self.parent, self.card, self.folder, self.name = parent, parent.card, parent.folder, parent.name

    def segment(self, frame):
        from dataclasses import replace

        from scipy import ndimage as ndi

        seg = self.parent.segment(frame)
        p = seg.probabilities.copy()
        p[0] = ndi.grey_erosion(p[0], size=3)
        p /= p.sum(axis=0, keepdims=True)
        return replace(seg, probabilities=p, precomputed_maps=None)


class DropsSmallParticles(GrownParticles):
    """A backend that finds the parent's particles with the parent's outlines, except that the smaller half of them
    (connected foreground components below the frame's median area) are background: the frames' D50 goes up, no
    outline changes — as when a model stops finding noise specks."""

    def segment(self, frame):
        from dataclasses import replace

        from scipy import ndimage as ndi

        seg = self.parent.segment(frame)
        p = seg.probabilities.copy()
        lab, n = ndi.label(p[0] < 0.5)
        if n:
            area = np.bincount(lab.ravel())[1:]
            small = np.r_[False, area < np.median(area)][lab]
            p[:, small] = 0.0
            p[0, small] = 1.0
        return replace(seg, probabilities=p, precomputed_maps=None)


def in_domain_frames(n: int = 2, size: int = 256) -> list[Frame]:
    rng = np.random.default_rng(5)
    return [Frame(s.image, s.nm_per_px, stream="t", frame_id=str(i), origin="sim")
            for i, s in enumerate(sample_domain_frame("in-domain", rng, size) for _ in range(n))]


def test_a_model_that_changes_the_sizes_the_parent_was_sure_of_is_not_promoted():
    card, folder = load_card("particles-stem")
    frames = in_domain_frames()
    same = decide(OrtBackend(card, folder), OrtBackend(card, folder), frames)
    assert same.checks["sizes_kept"] and same.adapted["matched_ecd_ratio"] == 1.0 and same.adapted["matched_particles"]
    grown = decide(OrtBackend(card, folder), GrownParticles(OrtBackend(card, folder)), frames)
    assert grown.adapted["matched_ecd_ratio"] > 1.03 and not grown.checks["sizes_kept"] and not grown.promote
    assert any("changes the sizes the parent measured with confidence" in r for r in grown.reasons)


def test_finding_fewer_particles_is_not_a_change_of_size():
    """The size check follows the particles both models find: dropping the small half moves the D50, not a size."""
    card, folder = load_card("particles-stem")
    d = decide(OrtBackend(card, folder), DropsSmallParticles(OrtBackend(card, folder)), in_domain_frames())
    assert d.adapted["d50_ratio"] > 1.03 and abs(d.adapted["matched_ecd_ratio"] - 1) < 0.01
    assert d.checks["sizes_kept"]


@pytest.mark.parametrize("regressor", [True, False])
def test_without_a_regressor_that_can_judge_it_a_model_is_never_promoted_automatically(regressor):
    """phases-sem's regressor predicts F1 on unseen domains only to ±0.11 (leave one domain out), and without one
    nothing says a model got better: a lower shift score alone is no evidence (the bench saw self-trained phase
    models promoted that were worse on true labels)."""
    card, folder = load_card("phases-sem")
    assert card.reliability_regressor
    if not regressor:
        card = card.model_copy(update={"reliability_regressor": None})
    rng = np.random.default_rng(3)
    frames = [Frame(sample_domain_frame("dose", rng, 128, task="phases").image, 2.0, stream="s", frame_id=str(i),
                    origin="sim")
              for i in range(2)]
    d = decide(OrtBackend(card, folder), OrtBackend(card, folder), frames)
    assert not d.promote and "predicted_f1" not in d.checks
    if regressor:
        assert d.parent["predicted_f1"] is not None
        assert any("too loose to judge an adapted model" in r for r in d.reasons)
        assert any("no trusted prediction of its quality" in r for r in d.reasons)
    else:
        assert d.parent["predicted_f1"] is None
        assert any("no reliability regressor" in r for r in d.reasons)


def test_promote_and_rollback(adapted, user_dir):
    parent, parent_dir = load_card("particles-stem")
    installed = promote(adapted.folder)
    assert installed == user_dir / "particles-stem"
    card, folder = load_card("particles-stem")  # the user's folder comes first on the search path
    assert folder == installed and card.version == adapted.version
    removed, now = rollback("particles-stem")
    assert removed == adapted.version and parent.version in now
    card, folder = load_card("particles-stem")
    assert card.version == parent.version and folder == parent_dir
    assert (user_dir / ".rolled-back" / "particles-stem" / adapted.version / "model.onnx").is_file()
    with pytest.raises(UserError, match="nothing to roll back"):
        rollback("particles-stem")


def test_hot_swap_loads_a_promoted_model_between_frames(adapted, tmp_path):
    from copilot.adapt.hotswap import ModelWatch
    from copilot.pipeline import InferStage

    parent, parent_dir = load_card("particles-stem")
    live = tmp_path / "particles-stem"
    shutil.copytree(parent_dir, live)
    t = [0.0]
    watch = ModelWatch(live, lambda: OrtBackend(*load_card(live)), parent.model_sha256, interval_s=1.0,
                       clock=lambda: t[0])
    swapped = []
    stage = InferStage(OrtBackend(parent, live), watch, swapped.append)
    frame = dose_frames(1)[0]
    assert stage(frame, None).model_version == parent.version
    for f in ("model.onnx", "card.json"):
        shutil.copy2(adapted.folder / f, live / f)
    assert stage(frame, None).model_version == parent.version  # not looked at again within interval_s
    t[0] = 5.0
    assert stage(frame, None).model_version == adapted.version
    assert len(swapped) == 1 and watch.swaps == 1
    (live / "model.onnx").write_bytes(b"broken")  # a bad model on disk: logged, the current one keeps running
    (live / "card.json").touch()
    t[0] = 10.0
    assert stage(frame, None).model_version == adapted.version


def test_appearance_fit_and_render_few_steps():
    from copilot.adapt.appearance import appearance_adapt, appearance_descriptor
    from copilot.adapt.torchnet import trainable_from_onnx

    card, folder = load_card("particles-stem")
    backend = OrtBackend(card, folder)
    frames = dose_frames(2)
    images = [backend.prepare(f)[0] for f in frames]
    net = trainable_from_onnx(folder / "model.onnx")
    before = [p.detach().clone() for p in net.parameters()]
    res = appearance_adapt(net, "particles", images, [f.nm_per_px for f in frames], card, (1.0, 1.0, 2.5), steps=1,
                           n_render=4, patch_px=64, candidates=4,
                           morphology={"d50_nm": 8.0, "sigma_log": 0.2, "area_fraction": 0.1})
    assert res.info["morphology_d50_nm"] == 8.0
    assert res.inputs.shape == (4, 1, 64, 64) and np.isfinite(res.inputs).all()
    assert any(not np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(before, net.parameters()))
    shares = [v for k, v in res.info.items() if k.startswith("fitted_modality_")]
    assert shares and abs(sum(shares) - 1.0) < 1e-9 and res.info["fitted_dose_median"] > 0
    rng = np.random.default_rng(0)
    sharp = rng.standard_normal((128, 128))
    from scipy import ndimage as ndi

    blurred = ndi.gaussian_filter(sharp, 2.0)
    blurred = (blurred - blurred.mean()) / blurred.std()
    # the descriptor's highest frequency band holds less of the power in a blurred image
    assert appearance_descriptor(blurred)[-1] < appearance_descriptor(sharp)[-1]


def test_the_appearance_fit_tells_a_defocused_stream_from_a_sharp_one():
    """Frames of one stream (one set of imaging parameters, new particles in each) rendered with 2 nm of probe blur
    and with 0.3 nm: the fitted blur follows (ABC, two rounds; the true values are never given to it)."""
    from dataclasses import replace

    from copilot.adapt.appearance import fit_appearance
    from copilot.sim.domains import domain_params

    card, folder = load_card("particles-stem")
    backend = OrtBackend(card, folder)
    fitted = {}
    for blur in (0.3, 2.0):
        params = replace(domain_params("in-domain", np.random.default_rng(1), 384, modality="bf-tem"),
                         nm_per_px=0.25, dose=200.0, probe_blur_nm=blur)
        rng = np.random.default_rng(2)
        frames = [Frame(s.image, s.nm_per_px, stream="t", frame_id=str(i), origin="sim")
                  for i, s in enumerate(sample_domain_frame("in-domain", rng, 384, params=params) for _ in range(3))]
        kept = fit_appearance("particles", [backend.prepare(f)[0] for f in frames], [0.25] * 3, card,
                              candidates=96, seed=0)
        assert {k["modality"] for k in kept} == {"bf-tem"}
        fitted[blur] = float(np.median([k["probe_blur_nm"] for k in kept]))
    assert fitted[0.3] < 1.0 and 1.3 < fitted[2.0] < 3.0, fitted


def test_the_parent_measures_the_morphology_the_appearance_method_renders():
    from dataclasses import replace

    from copilot.adapt.frames import particle_morphology
    from copilot.sim.domains import domain_params

    card, folder = load_card("particles-stem")
    params = replace(domain_params("in-domain", np.random.default_rng(3), 384, modality="haadf"), nm_per_px=0.25,
                     d50_nm=6.0, sigma_log=0.2, area_fraction=0.12)
    rng = np.random.default_rng(4)
    sims = [sample_domain_frame("in-domain", rng, 384, params=params) for _ in range(3)]
    frames = [Frame(s.image, s.nm_per_px, stream="t", frame_id=str(i), origin="sim") for i, s in enumerate(sims)]
    m = particle_morphology(OrtBackend(card, folder), frames)
    truth = np.median([q["ecd_nm"] for s in sims for q in s.truth["particles"] if not q["touches_edge"]])
    assert abs(m["d50_nm"] / truth - 1) < 0.15 and 0.1 <= m["sigma_log"] <= 0.35
    assert 0.06 < m["area_fraction"] < 0.2
    uncalibrated = [replace(f, nm_per_px=None) for f in frames]
    assert particle_morphology(OrtBackend(card, folder), uncalibrated) is None


def test_adapted_version_sorts_after_its_parent_and_names_the_method():
    from datetime import datetime, timezone

    when = datetime(2026, 11, 29, 20, 30, tzinfo=timezone.utc)
    v = adapted_version("0.2.0+selftrain.20260101t000000", "appearance", when)
    assert v == "0.2.0+appearance.20261129t203000"


def test_cli_errors_are_one_line(capsys, tmp_path):
    from copilot.cli import main

    assert main(["adapt", "--model", "particles-stem"]) == 2
    assert "--stream S, --frames DIR or --rollback" in capsys.readouterr().err
    assert main(["adapt", "--model", "particles-stem", "--frames", str(tmp_path)]) == 2
    assert "no readable image" in capsys.readouterr().err
    (tmp_path / "a.tif").write_bytes(b"")
    assert main(["adapt", "--model", "particles-stem", "--stream", "x", "--state-dir", str(tmp_path)]) == 2
    assert "no results store" in capsys.readouterr().err


def test_automatic_mode_adapts_after_n_drifting_frames(user_dir, tmp_path):
    from types import SimpleNamespace

    from copilot.adapt.auto import AutoAdapt
    from copilot.adapt.settings import AdaptSettings
    from copilot.sim.tiff import write_tiff

    rng = np.random.default_rng(1)
    paths = [write_tiff(tmp_path / f"f{i}.tif", sample_domain_frame("dose", rng, 192)) for i in range(2)]

    def result(i: int, mmd: float | None):
        rel = SimpleNamespace(shift_window_mmd2=mmd)
        return SimpleNamespace(doc=SimpleNamespace(origin=str(paths[i % 2]), stream="cam", reliability=rel))

    off = AutoAdapt(AdaptSettings(), "particles-stem", lambda: 0.1)
    for i in range(30):
        off(result(i, 1.0))
    assert off.status()["state"] == "idle" and not off.running  # off by default

    auto = AutoAdapt(AdaptSettings(auto=True, after_frames=3, steps=1, cooldown_min=60), "particles-stem",
                     lambda: 0.1)
    auto(result(0, 1.0))
    auto(result(1, 0.05))  # back under the threshold: the count starts again
    auto(result(2, 1.0))
    auto(result(3, 1.0))
    assert auto.status()["state"] == "idle" and auto.status()["frames_past_warn"] == 2
    auto(result(4, 1.0))
    assert auto.status()["state"] == "running" and auto.status()["frames"] == 2
    auto._thread.join(timeout=240)
    st = auto.status()
    assert st["state"] in ("promoted", "kept aside"), st
    assert (Path(st["folder"]) / "adaptation.json").is_file()
    auto(result(5, 1.0))  # within the cooldown: no second run
    assert not auto.running and auto.status()["state"] == st["state"]
    if st["state"] == "promoted":
        rollback("particles-stem")


def test_without_torch_one_line_names_the_extra(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\nfrom copilot.cli import main\n"
            f"sys.exit(main(['adapt', '--model', 'particles-stem', '--frames', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "copilot[train]" in lines[0]


def test_running_pipeline_swaps_models_between_frames_and_documents_name_the_version(adapted, tmp_path):
    import time

    from copilot.adapt.hotswap import ModelWatch
    from copilot.pipeline import Pipeline
    from copilot.sim.tiff import write_tiff
    from copilot.sources.base import Arrival

    parent, parent_dir = load_card("particles-stem")
    live = tmp_path / "particles-stem"
    shutil.copytree(parent_dir, live)
    rng = np.random.default_rng(4)
    files = [write_tiff(tmp_path / f"f{i}.tif", sample_domain_frame("dose", rng, 192)) for i in range(2)]
    results = []
    watch = ModelWatch(live, lambda: OrtBackend(*load_card(live)), parent.model_sha256, interval_s=0.0)
    p = Pipeline(OrtBackend(parent, live), sinks=[results.append], quarantine_dir=tmp_path / "q", model_watch=watch)
    p.start()
    p.submit(Arrival(origin=str(files[0]), path=files[0]))
    deadline = time.monotonic() + 120
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)
    for f in ("model.onnx", "card.json"):
        shutil.copy2(adapted.folder / f, live / f)
    p.submit(Arrival(origin=str(files[1]), path=files[1]))
    p.stop()
    versions = [r.doc.model.version for r in results]
    assert versions == [parent.version, adapted.version]
    assert p.backend.card.version == adapted.version and p.assessor.card.version == adapted.version


def test_stream_frames_are_the_files_behind_its_stored_results(tmp_path):
    from copilot.adapt.frames import frames_from_stream
    from copilot.pipeline import Pipeline
    from copilot.sim.tiff import write_tiff
    from copilot.sources.base import Arrival
    from copilot.store import ResultStore

    rng = np.random.default_rng(6)
    files = [write_tiff(tmp_path / f"f{i}.tif", sample_domain_frame("in-domain", rng, 160)) for i in range(3)]
    with ResultStore(tmp_path / "results.sqlite") as store:
        p = Pipeline(OrtBackend.from_name("particles-stem"), stream="cam1", store=store, quarantine_dir=tmp_path / "q")
        p.start()
        for f in files:
            p.submit(Arrival(origin=str(f), path=f))
        p.stop()
    files[0].unlink()  # gone since: skipped
    frames = frames_from_stream(tmp_path, "cam1", limit=10)
    assert [f.frame_id for f in frames] == ["f1", "f2"] and all(f.nm_per_px for f in frames)
    with pytest.raises(UserError, match="none of its"):
        frames_from_stream(tmp_path, "other", limit=10)
