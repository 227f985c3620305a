"""kill -9 at random moments while frames arrive at 30/s: nothing lost, nothing repeated — in the store, the
session exports and a `copilot tail --follow` consumer (bench/soak/kills.py runs the same with 20 kills)."""

from __future__ import annotations

import json

from tests.faults.kill_rig import all_exact, run_campaign


def test_kill_minus_9_loses_and_repeats_nothing(tmp_path, threshold_model_dir):
    report = run_campaign(tmp_path / "run", threshold_model_dir, frames=150, rate_hz=30, kills=4,
                          kill_after_s=(0.8, 3.5), seed=11, finish_timeout_s=240)
    assert all_exact(report), json.dumps(report, indent=1)
    assert report["exports"]["sessions"] == 1  # the session's exports continued across every restart
