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


def test_grains_command_with_a_boundary_model(tmp_path, capsys, grains_model_dir, threshold_model_dir):
    from copilot.sim.grain_frames import random_grain_params, simulate_grains
    from copilot.sim.tiff import write_tiff

    sim = simulate_grains(random_grain_params(np.random.default_rng(0), 384, nm_per_px_range=(250.0, 250.0),
                                              grain_g=11.0, dose=400.0, probe_blur_nm=60.0, scratches=0,
                                              twins_per_grain=0.0, etch_depth=0.45, etch_variation=0.1, rim=0.0,
                                              shading=0.0, line_jitter_px=0.0, scanline_noise=0.0), 0)
    write_tiff(tmp_path / "etched.tif", sim)
    assert main(["grains", str(tmp_path / "etched.tif"), "--boundaries", "model", "--model", str(grains_model_dir),
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    g = float(out.split("planimetric (Jeffries)")[1].split("G = ")[1].split()[0])
    assert g == pytest.approx(sim.truth["g"], abs=0.3)
    assert (tmp_path / "grains.csv").read_text().startswith("area_um2,ecd_um,g")
    assert main(["grains", str(tmp_path / "etched.tif"), "--boundaries", "model", "--model",
                 str(threshold_model_dir)]) == 2
    assert "needs a grains model" in capsys.readouterr().err
