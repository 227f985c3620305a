"""`copilot grains` on a boundary mask and on an etched-looking image of a simulated polycrystal."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from copilot.cli import main
from copilot.sim.polycrystal import simulate_polycrystal
from tests.analysis.test_grains import nm_for


@pytest.fixture()
def polycrystal():
    return simulate_polycrystal((384, 384), 9, nm_for(9, 384, 250), rng=2)


def test_grains_command_on_a_mask_and_an_etched_image(tmp_path, capsys, polycrystal):
    import imageio.v3 as iio

    pc = polycrystal
    iio.imwrite(tmp_path / "mask.png", (pc.boundaries * 255).astype(np.uint8))
    assert main(["grains", str(tmp_path / "mask.png"), "--nm-per-px", str(pc.nm_per_px), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    g = float(out.split("planimetric (Jeffries)")[1].split("G = ")[1].split()[0])
    assert g == pytest.approx(pc.g, abs=0.25)
    assert len((tmp_path / "grains.csv").read_text().splitlines()) > 100
    rng = np.random.default_rng(0)
    shade = rng.uniform(120, 200, pc.grains.max() + 1)[pc.grains]  # channelling contrast per grain
    img = ndi.gaussian_filter(np.where(pc.boundaries, 40.0, shade), 0.8) + rng.normal(0, 6, pc.grains.shape)
    iio.imwrite(tmp_path / "etched.png", np.clip(img, 0, 255).astype(np.uint8))
    assert main(["grains", str(tmp_path / "etched.png"), "--boundaries", "dark", "--nm-per-px", str(pc.nm_per_px)]) == 0
    out = capsys.readouterr().out
    g = float(out.split("planimetric (Jeffries)")[1].split("G = ")[1].split()[0])
    assert g == pytest.approx(pc.g, abs=0.5)


def test_grains_command_needs_a_calibration(tmp_path, capsys, polycrystal):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "mask.png", (polycrystal.boundaries * 255).astype(np.uint8))
    assert main(["grains", str(tmp_path / "mask.png")]) == 2
    assert "--nm-per-px" in capsys.readouterr().err
