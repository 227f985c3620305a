"""The README's notebook example runs as written (on a results folder made by `copilot analyze`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from copilot.cli import main
from copilot.sim.stem import SimParams, simulate_frame
from copilot.sim.tiff import write_tiff

README = Path(__file__).resolve().parents[1] / "README.md"


def test_notebook_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hyperspy")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2 and "copilot.analyze_image" in blocks[0] and "copilot.read_results" in blocks[1]
    monkeypatch.chdir(tmp_path)
    acq = tmp_path / "acq"
    acq.mkdir()
    for i in range(2):
        write_tiff(acq / f"frame_{i}.tif", simulate_frame(SimParams(size_px=384, nm_per_px=0.2), rng=i))
    assert main(["analyze", str(acq), "--out", "results"]) == 0
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert out.split()[0] in ("ok", "warn", "fail") and " nm" in out.splitlines()[0]
    assert len(namespace["frames"]) == 2 and namespace["particles"]["ecd_nm"].notna().any()
