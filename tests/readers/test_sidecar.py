"""A JSON sidecar beside an image adds the keys its file lacks (the irradiation dose, the foil thickness); a bad one
is skipped with a reason and never costs the frame."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from copilot.readers import read_frame
from copilot.readers.sidecar import SIDECAR_MAX_BYTES


def _image(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 4000, (64, 80)).astype(np.uint16)
    tifffile.imwrite(path, pixels, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "nm"})
    return path


def test_sidecar_keys_join_the_frame_metadata(tmp_path):
    img = _image(tmp_path / "foil_0001.tif")
    (tmp_path / "foil_0001.tif.json").write_text(json.dumps(
        {"dose_dpa": 0.75, "foil_thickness_nm": 92.5, "temperature_c": 450, "note": "after anneal"}))
    frame = read_frame(img)
    assert frame.meta["dose_dpa"] == 0.75 and frame.meta["foil_thickness_nm"] == 92.5
    assert frame.meta["temperature_c"] == 450 and frame.meta["note"] == "after anneal"
    assert frame.meta["sidecar"].endswith("foil_0001.tif.json") and frame.nm_per_px == pytest.approx(0.25)


def test_stem_sidecar_and_which_one_wins(tmp_path):
    img = _image(tmp_path / "f.tif")
    (tmp_path / "f.json").write_text('{"dose_dpa": 1.0}')
    assert read_frame(img).meta["dose_dpa"] == 1.0
    (tmp_path / "f.tif.json").write_text('{"dose_dpa": 2.0}')  # the file's own name is the more specific
    assert read_frame(img).meta["dose_dpa"] == 2.0
    assert "dose_dpa" not in read_frame(_image(tmp_path / "other.tif")).meta


def test_the_file_and_the_reader_keep_their_own_keys(tmp_path):
    img = _image(tmp_path / "f.tif")
    (tmp_path / "f.json").write_text(json.dumps(
        {"imagej_unit": "mm", "data_bar_rows": 99, "signal": 5, "source_shape": [1, 1], "dose": 3}))
    meta = read_frame(img).meta
    assert meta["imagej_unit"] == "nm"  # what the file says
    assert meta["data_bar_rows"] == 0 and meta["source_shape"] == [64, 80] and "signal" not in meta
    assert meta["dose"] == 3


@pytest.mark.parametrize("content, reason", [
    (b"{dose_dpa: 1}", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b"\xff\xfe{}", "not JSON"),
    (b"[" * 5000 + b"]" * 5000, "levels deep"),
    (b'{"a": "' + b"x" * SIDECAR_MAX_BYTES + b'"}', "larger than"),
])
def test_a_bad_sidecar_is_skipped_with_its_reason(tmp_path, caplog, content, reason):
    img = _image(tmp_path / "f.tif")
    (tmp_path / "f.tif.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="copilot.readers.sidecar"):
        frame = read_frame(img)
    assert reason in frame.meta["sidecar_error"] and "f.tif.json" in frame.meta["sidecar_error"]
    assert "sidecar" not in frame.meta and frame.pixels.shape == (64, 80)
    assert any(reason in r.getMessage() for r in caplog.records)


def test_a_folder_named_like_a_sidecar_is_not_one(tmp_path):
    img = _image(tmp_path / "f.tif")
    (tmp_path / "f.tif.json").mkdir()
    meta = read_frame(img).meta
    assert "sidecar" not in meta and "sidecar_error" not in meta


def test_swelling_against_the_sidecars_dose_through_copilot_analyze(tmp_path):
    """The irradiation preset without a configured thickness: each frame's thickness and dose come from its sidecar,
    and the stream's swelling trend against dose is there."""
    from copilot.cli import main
    from copilot.sim.irradiation import FoilParams, simulate_foil
    from copilot.sim.tiff import write_tiff

    preset = Path(__file__).resolve().parents[2] / "configs" / "tem-irradiation-defects.toml"
    text = preset.read_text()
    assert "\nfoil_thickness_nm = 80.0" in text
    config = tmp_path / "irradiation.toml"
    config.write_text(text.replace("\nfoil_thickness_nm = 80.0", "\n"))
    acq = tmp_path / "acq"
    acq.mkdir()
    for i, dose in enumerate([0.5, 1.0, 1.5, 2.0]):
        p = FoilParams(size_px=384, nm_per_px=0.5, cavity_density_per_um2=1500, cavity_d50_nm=5.0 + 2 * i,
                       cavity_min_nm=3.0, loop_density_per_um2=400)
        (acq / f"foil_{i}.tif.json").write_text(json.dumps({"dose_dpa": dose, "foil_thickness_nm": 70.0}))
        write_tiff(acq / f"foil_{i}.tif", simulate_foil(p, 60 + i))
    out = tmp_path / "out"
    assert main(["analyze", str(acq), "--config", str(config), "--out", str(out)]) == 0
    docs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(docs) == 4
    for d in docs:
        s = d["measurements"]["defects"]
        assert s["foil_thickness_nm"] == 70.0 and s["thickness_source"] == "metadata" and s["swelling"] > 0
    assert sorted(d["measurements"]["defects"]["dose"] for d in docs) == [0.5, 1.0, 1.5, 2.0]
    last = max(docs, key=lambda d: d["measurements"]["defects"]["dose"])
    assert "swelling vs dose" in {t["quantity"] for t in last["series"]["trends"]}
    assert (out / "dose.png").exists() and (out / "trend.png").exists()  # swelling against dose, and over time
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert sorted(float(r["dose"]) for r in rows) == [0.5, 1.0, 1.5, 2.0]
