"""`copilot analyze` end to end: real files in, the exports a microscopist opens out."""

import csv
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import tifffile
from PIL import Image

from copilot.cli import main
from copilot.exports import PARTICLE_COLUMNS
from tests.conftest import disc_image


def make_folder(tmp_path, n=4):
    acq = tmp_path / "acq"
    acq.mkdir()
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    for i in range(n):
        img = disc_image((256, 256), rng.integers(25, 231, size=(10, 2)), 8 + i)
        tifffile.imwrite(acq / f"frame_{i:03d}.tif", img, imagej=True, resolution=(2.0, 2.0),
                         metadata={"unit": "nm"}, datetime=(t0 + timedelta(minutes=i)).strftime("%Y:%m:%d %H:%M:%S"))
    return acq


def test_analyze_writes_exports(tmp_path, threshold_model_dir):
    acq = make_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["analyze", str(acq), "--model", str(threshold_model_dir), "--out", str(out), "--save-masks"]) == 0
    docs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(docs) == 4 and all(d["schema"] == "copilot.result/1" for d in docs)
    with open(out / "particles.csv") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames[:14] == PARTICLE_COLUMNS[:14]
        rows = list(reader)
    assert len(rows) == sum(d["measurements"]["particles"]["count"] for d in docs)
    inner = [r for r in rows if r["touches_edge"] == "False"]
    # frame i has discs of radius 8 + i px at 0.5 nm/px
    for d in docs:
        i = int(d["frame_id"].split("_")[1])
        assert d["measurements"]["particles"]["d50"] == pytest.approx((8 + i) * 2 * 0.5, abs=0.5)
    assert all(float(r["ecd_nm"]) > 0 and float(r["ecd_px"]) == pytest.approx(float(r["ecd_nm"]) / 0.5) for r in inner)
    frames = list(csv.DictReader(open(out / "frames.csv")))
    assert [f["frame_id"] for f in frames] == [f"frame_{i:03d}" for i in range(4)]
    labels = tifffile.imread(out / "frame_000.labels.tif")
    assert labels.shape == (256, 256) and labels.dtype == np.uint16 and labels.max() == docs[0]["measurements"]["particles"]["count"]
    summary = json.loads((out / "summary.json").read_text())
    (stream,) = summary.values()
    assert stream["frames"] == 4 and stream["series"]["trends"][0]["quantity"] == "d50"
    assert stream["series"]["trends"][0]["slope"] > 0  # discs grow by 1 nm of diameter per minute
    for png in ("psd.png", "trend.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_uncalibrated_png_reports_pixels(tmp_path, threshold_model_dir):
    acq = tmp_path / "acq"
    acq.mkdir()
    Image.fromarray((disc_image((128, 128), [(64, 64)], 10) // 4).astype(np.uint8)).save(acq / "photo.png")
    out = tmp_path / "out"
    assert main(["analyze", str(acq / "photo.png"), "--model", str(threshold_model_dir), "--out", str(out)]) == 0
    doc = json.loads((out / "results.jsonl").read_text())
    assert doc["calibration"]["calibrated"] is False and doc["measurements"]["length_unit"] == "px"
    assert doc["measurements"]["particles"]["d50"] == pytest.approx(20, abs=1)
    assert any("calibration" in r for r in doc["verdict"]["reasons"])
    (row,) = list(csv.DictReader(open(out / "particles.csv")))
    assert row["ecd_nm"] == "" and float(row["ecd_px"]) == pytest.approx(20, abs=1)


def test_analyze_reports_unreadable_file_and_goes_on(tmp_path, threshold_model_dir):
    acq = make_folder(tmp_path, n=1)
    (acq / "broken.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    assert main(["analyze", str(acq), "--model", str(threshold_model_dir), "--out", str(out)]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    assert (acq / "broken.tif").exists(), "analyze never moves the user's files"
