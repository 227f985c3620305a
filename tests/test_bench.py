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


def test_naive_baseline_is_skipped_in_one_line_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.path.insert(0, 'bench'); import runner; "
            "print(runner.torch_missing())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "torch is not installed (the train extra)", out.stderr


def test_bench_rejects_bad_sizes_in_one_line():
    out = subprocess.run([sys.executable, "-m", "copilot.cli", "bench", "--sizes", "big"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--sizes" in out.stderr and "Traceback" not in out.stderr
