"""EDS inclusions: known compositions in simulated cubes, the real Bruker BCF test files, and bad input."""

from pathlib import Path

import numpy as np
import pytest
import tomllib
from pydantic import ValidationError

from copilot.config import load_settings
from copilot.eds.cube import EdsCube, EdsReadError, read_eds
from copilot.eds.inclusions import analyse_inclusions, object_spectra, segment_inclusions
from copilot.eds.lines import LINES
from copilot.eds.quant import element_fractions, line_intensities
from copilot.eds.settings import EdsSettings
from copilot.sim.eds import K_FACTORS, TEMPLATES, simulate_eds, spectrum
from tests.readers.conftest import hyperspy_io

ROOT = Path(__file__).resolve().parents[2]
CFG = EdsSettings(k_factors=K_FACTORS)


def test_noise_free_spectrum_gives_the_composition_back():
    e = -0.47 + 0.01 * np.arange(2048)
    for cls, comp in TEMPLATES.items():
        spec = spectrum(comp | {"Fe": 0.3}, e, CFG) * 1e7
        win, net, sigma, bg = line_intensities(spec, -0.47, 0.01, CFG)
        fr = element_fractions(net, sigma, bg, win, CFG)
        got = dict(zip(fr.elements, fr.weight[0]))
        for el, c in comp.items():
            assert got[el] == pytest.approx(c, abs=0.01), (cls, el)
        assert sum(v for el, v in got.items() if el not in comp) < 0.01, cls  # nothing invented


def test_simulated_cube_classes_and_fractions():
    cube, truth = simulate_eds((96, 96), counts_per_px=150, n_inclusions=18, rng=4, cfg=CFG)
    rep = analyse_inclusions(cube, truth.labels, CFG)
    assert len(rep.objects) == len(truth.classes)
    right = sum(o.inclusion_class == truth.classes[o.id] for o in rep.objects)
    assert right / len(rep.objects) >= 0.9
    assert all(0 <= o.confidence <= 1 for o in rep.objects)
    weight = EdsSettings(k_factors=K_FACTORS, basis="weight")
    for o in analyse_inclusions(cube, truth.labels, weight).objects:
        for el, c in truth.weight[o.id].items():
            if c >= 0.1:  # major elements
                assert o.fractions.get(el, 0.0) == pytest.approx(c, abs=0.05), (o.id, el)
    # tallies: counts per class add up, densities use the field area
    assert sum(t.count for t in rep.classes) == len(rep.objects)
    field_mm2 = 96 * 96 * (100e-6) ** 2
    assert rep.field_area_mm2 == pytest.approx(field_mm2)
    for t in rep.classes:
        assert t.count_per_mm2 == pytest.approx(t.count / field_mm2)
    assert "semi-quantitative" in rep.note


def test_object_spectra_sum_the_pixels():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2, size=(20, 30, 64)).astype(np.uint16)
    labels = np.zeros((20, 30), np.int32)
    labels[2:6, 3:9] = 4
    labels[10:15, 20:28] = 2
    ids, areas, spectra = object_spectra(counts, labels)
    assert list(ids) == [2, 4] and list(areas) == [40, 24]
    np.testing.assert_array_equal(spectra[1], counts[2:6, 3:9].sum(axis=(0, 1)))
    with pytest.raises(ValueError, match="do not match"):
        object_spectra(counts, labels[:10])


def test_segmentation_from_the_eds_signal_finds_the_inclusions():
    cube, truth = simulate_eds((96, 96), n_inclusions=8, radius_px=(3, 5), rng=9, cfg=CFG)
    seg = segment_inclusions(cube, CFG)
    found = [(seg[truth.labels == k] > 0).mean() > 0.5 for k in truth.classes]
    assert all(found)
    assert (seg[truth.labels == 0] > 0).mean() < 0.05


@pytest.mark.parametrize("name, elements", [("bcf_v2_50x50px.bcf", {"Al", "Cu", "O"}),
                                            ("test_TEM.bcf", {"Cu", "Ti", "Pd"})])
def test_real_bcf_spectrum_image_gives_per_object_spectra(name, elements):
    cube = read_eds(hyperspy_io(f"bruker_data/{name}"))
    h, w, c = cube.counts.shape
    assert c == 2048 and cube.scale_kev == pytest.approx(0.01, rel=0.01) and cube.nm_per_px > 0
    assert elements <= set(cube.elements)
    labels = np.zeros((h, w), np.int32)
    labels[: h // 2, : w // 2], labels[h // 2 :, w // 2 :] = 1, 2  # two quadrants as objects
    lines = [ln for ln in LINES if ln.split("_")[0] in cube.elements]
    cfg = EdsSettings(lines=lines, matrix_elements=[], quant_lines={})
    rep = analyse_inclusions(cube, labels, cfg)
    assert [o.id for o in rep.objects] == [1, 2]
    assert rep.spectra[0].sum() == cube.counts[: h // 2, : w // 2].sum()
    assert any(sum(o.fractions.values()) == pytest.approx(1.0) for o in rep.objects)
    strongest = max(rep.objects[0].net, key=rep.objects[0].net.get)
    assert strongest.split("_")[0] in cube.elements


def test_unreadable_files_and_bad_settings_are_clear(tmp_path):
    with pytest.raises(EdsReadError, match="not '.tif'"):
        read_eds(tmp_path / "image.tif")
    with pytest.raises(EdsReadError, match="cannot read"):
        read_eds(hyperspy_io("bruker_data/Nope.bcf"))
    with pytest.raises(ValidationError, match="unknown X-ray line"):
        EdsSettings(lines=["Xx_Ka"])
    with pytest.raises(ValueError, match="channels"):
        EdsCube(np.zeros((4, 4)), 0.0, 0.01)


def test_inclusion_preset_loads_with_its_rules():
    path = ROOT / "configs" / "sem-inclusions-eds.toml"
    eds = load_settings(path).eds
    assert [r.name for r in eds.classes] == ["oxysulfide", "complex", "oxide", "sulfide", "nitride", "carbide"]
    assert eds.k_factors == K_FACTORS
    assert tomllib.loads(path.read_text())["eds"]["basis"] == "atomic"


def test_inclusions_command_on_a_real_bcf(tmp_path, capsys):
    from copilot.cli import main

    bcf = hyperspy_io("bruker_data/bcf_v2_50x50px.bcf")
    mask = np.zeros((50, 50), np.int32)
    mask[10:20, 10:20] = 1
    np.save(tmp_path / "mask.npy", mask)
    preset = str(ROOT / "configs" / "sem-inclusions-eds.toml")
    assert main(["inclusions", str(bcf), "--config", preset, "--labels", str(tmp_path / "mask.npy"),
                 "--out", str(tmp_path / "out")]) == 0
    assert "1 objects" in capsys.readouterr().out
    rows = (tmp_path / "out" / "inclusions.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1,")
    np.save(tmp_path / "small.npy", mask[:20])
    assert main(["inclusions", str(bcf), "--labels", str(tmp_path / "small.npy")]) == 2
    assert main(["inclusions", str(tmp_path / "missing.bcf")]) == 2


def test_real_velox_emd_spectrum_image():
    emd = hyperspy_io("emd_files/fei_emd_files.zip/fei_SI_SuperX-HAADF_10frames_10x50.emd")
    cube = read_eds(emd)
    assert cube.counts.shape == (50, 10, 4096) and cube.nm_per_px > 0 and cube.scale_kev == pytest.approx(0.005)
    labels = np.zeros(cube.shape, np.int32)
    labels[:25], labels[25:] = 1, 2
    rep = analyse_inclusions(cube, labels, EdsSettings(lines=["O_Ka", "Si_Ka", "Cu_Ka", "Fe_Ka"], matrix_elements=[],
                                                       quant_lines={}))
    assert sum(o.counts for o in rep.objects) == int(cube.counts.sum())
