"""The benchmark's own code runs (numbers are reported by `copilot bench`, never asserted here)."""

import subprocess
import sys

from copilot.cli.bench import REPO, _load_runner


def test_postprocess_bench_runs_on_the_replay_backend(threshold_model_dir):
    runner = _load_runner()
    results = runner.run_postprocess_bench((128,), 3, workers=2, model=str(threshold_model_dir), log=lambda *_: None)
    size = results["postprocess"]["sizes"]["128"]
    assert set(size["single"]) >= {"analyze", "assess", "follow", "sink", "total", "cpu_ms"}
    assert [(t["workers"], t["mode"]) for t in size["throughput"]] == [(1, "threads"), (2, "threads"), (2, "processes")]
    assert all(t["cpu_ms_per_frame"] > 0 for t in size["throughput"]) and size["profile_top"]
    assert results["machine"]["versions"]["numpy"] and "load1_mean" in results["machine"]
    assert "## Post-processing" in results["markdown"]


def test_bench_frames_follow_the_models_task(tmp_path):
    """A phases model is benchmarked on SEM micrographs, a particles model on STEM frames, at the calibration the
    files say; a task the benches cannot simulate is named."""
    import pytest

    from copilot.readers import read_frame

    runner = _load_runner()
    phases = runner.simulated_tiffs(96, 2, tmp_path, 1.0, task="phases")
    particles = runner.simulated_tiffs(96, 1, tmp_path, 0.2, task="particles")
    assert len({p.name for p in phases + particles}) == 3
    frames = [read_frame(p) for p in phases + particles]
    assert [f.nm_per_px for f in frames] == pytest.approx([1.0, 1.0, 0.2])
    assert not (frames[0].pixels == frames[1].pixels).all()
    with pytest.raises(ValueError, match="'grains'"):
        runner._postprocess_module().simulated_images(96, 1, 1.0, task="grains")


def test_naive_baseline_is_skipped_in_one_line_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.path.insert(0, 'bench'); import runner; "
            "print(runner.torch_missing())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "torch is not installed (the train extra)", out.stderr


def test_bench_rejects_bad_sizes_in_one_line():
    out = subprocess.run([sys.executable, "-m", "copilot.cli", "bench", "--sizes", "big"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--sizes" in out.stderr and "Traceback" not in out.stderr



def test_a_result_replayed_from_an_earlier_run_is_not_counted(tmp_path):
    """A daemon restarted on an old state folder (``--workdir``) replays earlier documents with the same frame ids
    in its snapshot; latency and throughput must wait for this run's results, not take those (a throughput run once
    read 0.75 frames/s for a daemon doing 7)."""
    import queue
    import threading
    import time

    import numpy as np
    import tifffile

    runner = _load_runner()
    src, acq = tmp_path / "src.tif", tmp_path / "acq"
    tifffile.imwrite(src, np.zeros((8, 8), np.uint16))
    inbox: queue.Queue = queue.Queue()
    listener = runner.Listener(lambda timeout: inbox.get(timeout=timeout) if not inbox.empty() else None)
    stop = threading.Event()

    def daemon():  # answers each file 0.2 s after it appears in the folder
        seen = set()
        while not stop.is_set():
            for f in acq.glob("*.tif"):
                if f.stem not in seen:
                    seen.add(f.stem)
                    time.sleep(0.2)
                    inbox.put((f.stem, {"run": "this"}))
            time.sleep(0.01)

    try:
        staged = runner.stage([src], acq, 2, "t")
        for f in staged:  # what the restarted daemon's snapshot replays at connect
            inbox.put((f.stem, {"run": "earlier"}))
        assert listener.wait([f.stem for f in staged], 5)
        worker = threading.Thread(target=daemon)
        worker.start()
        lat, timings = runner.measure_latency(staged, acq, listener, gap_s=0.0, timeout=10)
        assert timings == [{"run": "this"}] * 2 and min(lat) >= 0.2
    finally:
        stop.set()
        listener.close()


def test_cavity_detectability_grows_with_the_square_root_of_the_dose():
    """bench/accuracy/defects_visibility: the ideal observer's d' of the same cavities at 4× the dose is 2× (shot
    noise), and larger cavities stand out more."""
    from dataclasses import replace

    import numpy as np

    sys.path.insert(0, str(REPO / "bench" / "accuracy"))
    from defects_visibility import cavity_dprimes

    from copilot.sim.irradiation import FoilParams, simulate_foil

    base = FoilParams(size_px=256, nm_per_px=0.5, cavity_density_per_um2=800, cavity_d50_nm=6.0, cavity_min_nm=3.0,
                      loop_density_per_um2=0, read_noise=0.0, dose=100.0)
    low = cavity_dprimes(simulate_foil(base, 3))
    high = cavity_dprimes(simulate_foil(replace(base, dose=400.0), 3))
    assert len(low) == len(high) >= 5
    ratio = np.median([h[2] / lo[2] for lo, h in zip(low, high)])
    assert 1.8 < ratio < 2.2
    d = np.array([r[1] for r in low])
    dp = np.array([r[2] for r in low])
    assert np.corrcoef(d, dp)[0, 1] > 0.5


def test_particle_detectability_grows_with_the_square_root_of_the_dose():
    """bench/accuracy/particle_visibility: the same particles at 4× the dose stand out 2× (HAADF, shot noise), and
    the replay reads the generator without advancing it."""
    from dataclasses import replace

    import numpy as np

    sys.path.insert(0, str(REPO / "bench" / "accuracy"))
    from particle_visibility import particle_dprimes

    from copilot.sim.stem import SimParams

    base = SimParams(size_px=192, nm_per_px=0.25, area_fraction=0.1, dose=20.0, read_noise=0.0, modality="haadf")
    rng = np.random.default_rng(4)
    state = rng.bit_generator.state
    low = particle_dprimes(base, rng)
    assert rng.bit_generator.state == state
    high = particle_dprimes(replace(base, dose=80.0), np.random.default_rng(4))
    assert low.keys() == high.keys() and len(low) >= 5
    assert 1.9 < np.median([high[k] / low[k] for k in low]) < 2.1


def test_paired_bench_imports_the_other_tree_beside_this_one(tmp_path):
    """bench/postprocess_paired.py's copy of another tree: its package renamed copilot_before, every import of itself
    (and module names in strings) pointing at the copy, never at this tree's copilot."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from postprocess_paired import renamed_copy
    finally:
        sys.path.remove(str(REPO / "bench"))
    pkg = tmp_path / "tree" / "copilot"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("X = 'old'\n")
    (pkg / "a.py").write_text("from copilot.sub.b import X\nimport copilot.sub.b\nfrom copilot import sub\n"
                              "OWN = 'copilot.sub.b'\nY = copilot.sub.b.X\n")
    renamed_copy(tmp_path / "tree", tmp_path / "scratch")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import copilot_before.a as a; "
            "print(a.X, a.Y, a.OWN, a.sub.__name__, 'copilot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "scratch")], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["old", "old", "copilot_before.sub.b", "copilot_before.sub", "False"]
