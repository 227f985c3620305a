import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from copilot.analysis.particles import measure_particles, size_statistics
from copilot.analysis.settings import AnalysisSettings
from copilot.frame import Frame
from copilot.inference.segmentation import Segmentation

CLASSES = ("background", "particle", "boundary")


def segmentation_from_instances(instances: np.ndarray, nm_per_px: float | None, scale: float = 1.0) -> Segmentation:
    """Confident probabilities whose boundary class is a thin ring at each instance's edge."""
    ring = find_boundaries(instances, mode="inner") & (instances > 0)
    cls = np.where(instances > 0, 1, 0)
    cls[ring] = 2
    probs = np.full((3,) + instances.shape, 0.02, np.float32)
    for c in range(3):
        probs[c][cls == c] = 0.96
    frame_shape = tuple(int(round(n * scale)) for n in instances.shape)
    frame = Frame(np.zeros(frame_shape, np.uint16), nm_per_px=nm_per_px, stream="t", frame_id="f", origin="mem")
    return Segmentation(frame, probs, np.zeros(2, np.float32), CLASSES, "m", "1", "test", frame_px_per_px=scale)


def discs(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inst = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, 1):
        inst[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return inst


@pytest.mark.parametrize("nm_per_px", [0.2, 0.5, 1.3])
@pytest.mark.parametrize("radius", [6, 11, 20])
def test_disc_ecd_in_nm(nm_per_px, radius):
    inst = discs((200, 200), [(60, 60), (60, 140), (140, 100)], radius)
    fm = measure_particles(segmentation_from_instances(inst, nm_per_px), AnalysisSettings(min_area_nm2=0))
    p = fm.summary.particles
    assert fm.summary.length_unit == "nm"
    assert p.count == 3 and p.count_sized == 3
    assert p.d50 == pytest.approx(2 * radius * nm_per_px, abs=nm_per_px)


def test_touching_particles_are_split():
    inst = discs((120, 160), [(60, 50)], 22)
    other = discs((120, 160), [(60, 93)], 22)  # overlaps the first by a sliver
    inst[(other > 0) & (inst == 0)] = 2
    fm = measure_particles(segmentation_from_instances(inst, 0.5), AnalysisSettings(min_area_nm2=0))
    assert fm.summary.particles.count == 2


def test_edge_particles_counted_not_sized():
    inst = discs((200, 200), [(100, 100), (100, 3)], 10)
    p = measure_particles(segmentation_from_instances(inst, 0.5), AnalysisSettings(min_area_nm2=0)).summary.particles
    assert p.count == 2 and p.count_edge == 1 and p.count_sized == 1
    assert [q.touches_edge for q in sorted(p.particles, key=lambda q: q.centroid_x_px)] == [True, False]
    assert p.d50 == pytest.approx(10.0, abs=0.5)


def test_uncalibrated_frame_reports_pixels():
    inst = discs((100, 100), [(50, 50)], 10)
    fm = measure_particles(segmentation_from_instances(inst, None), AnalysisSettings(min_area_nm2=0))
    assert fm.summary.length_unit == "px"
    assert fm.summary.particles.d50 == pytest.approx(20.0, abs=1.0)


def test_centroids_are_in_frame_pixels_when_grid_is_coarser():
    inst = discs((100, 100), [(30, 70)], 8)
    p = measure_particles(segmentation_from_instances(inst, 0.5, scale=2.0), AnalysisSettings(min_area_nm2=0)).summary.particles
    (q,) = p.particles
    assert q.centroid_x_px == pytest.approx(140.5, abs=0.01) and q.centroid_y_px == pytest.approx(60.5, abs=0.01)
    assert q.ecd == pytest.approx(16 * 1.0, abs=1.0)  # grid is 1 nm/px


def test_min_area_removes_specks():
    inst = discs((100, 100), [(50, 50)], 10)
    inst[5:7, 5:7] = 2
    p = measure_particles(segmentation_from_instances(inst, 0.5), AnalysisSettings(min_area_nm2=2.0)).summary.particles
    assert p.count == 1


def test_size_statistics_empty_and_known():
    assert size_statistics(np.array([]))["d50"] is None
    s = size_statistics(np.arange(1, 102, dtype=float))
    assert s["d50"] == 51 and s["d10"] == 11 and s["d90"] == 91


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_mean_intensity_reads_the_frame_pixel_at_each_grid_pixel(scale):
    """A particle's mean intensity: the mean of the raw frame pixel at the centre of each of its grid pixels (the
    frame's own pixel when the grid is the frame), whatever the frame's size against the grid."""
    from dataclasses import replace

    from copilot.analysis.particles import label_means
    from copilot.inference.preprocess import nearest_resample

    inst = discs((80, 90), [(25, 30), (50, 60)], 8)
    seg = segmentation_from_instances(inst, 0.5, scale)
    pixels = np.random.default_rng(3).integers(0, 4000, seg.frame.pixels.shape).astype(np.uint16)
    seg = replace(seg, frame=Frame(pixels, nm_per_px=0.5, stream="t", frame_id="f", origin="mem"))
    fm = measure_particles(seg, AnalysisSettings(min_area_nm2=0))
    n = int(fm.instances.max())
    want = label_means(fm.instances, n, nearest_resample(pixels, fm.instances.shape).astype(np.float64))[0]
    got = fm.summary.particles.table.mean_intensity
    assert n == 2 and np.all(got > 0)
    np.testing.assert_array_equal(got, want)


def test_core_markers_keep_a_thin_tip_with_its_particle():
    from copilot.analysis.particles import core_markers

    core = np.zeros((8, 10), bool)
    core[1:4, 1:4] = True  # a particle's core …
    core[4, 4] = True  # … and its tip, joined at a corner only (a thin particle's ring cuts its core diagonally)
    core[1:3, 7:9] = True  # another particle
    core[6, 0] = True  # a tiny particle whose core is one pixel, on its own
    m = core_markers(core)
    assert m[4, 4] == m[2, 2] and m[1, 7] not in (0, m[2, 2]) and m[6, 0] not in (0, m[2, 2], m[1, 7])
    assert np.unique(m[core]).size == 3 and np.all(m[~core] == 0)
    bridge = np.zeros((5, 7), bool)
    bridge[0:2, 0:3] = bridge[3:5, 4:7] = bridge[2, 3] = True  # one pixel between two cores: joins neither
    assert np.unique(core_markers(bridge)[bridge]).size == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_markers_compiled_equal_numpy(monkeypatch, seed):
    """kernels.join_tips gives core_markers' numpy loop bit for bit on cores full of tips, single pixels, bridges
    and pieces touching several others at corners (tips joined one after another, in raster order)."""
    from copilot.analysis.kernels import kernel
    from copilot.analysis.particles import core_markers

    if kernel("join_tips") is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(seed)
    core = (rng.random((120, 140)) < 0.3) | (ndi.gaussian_filter(rng.random((120, 140)), 2) > 0.53)
    core[0, :] |= rng.random(140) < 0.5  # pieces on the border: windows clipped there
    fast = core_markers(core)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = core_markers(core)
    assert (fast != ndi.label(core)[0]).any()  # some tips were joined
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("nm_per_px", [0.25, None])
def test_the_document_rows_are_the_table_row_by_row(nm_per_px):
    """ParticleTable.rows (built column-wise, positionally) gives what row(i) gives field by field, positions in nm
    only when calibrated."""
    inst = discs((64, 64), [(16, 16), (40, 44), (50, 12)], 6)
    table = measure_particles(segmentation_from_instances(inst, nm_per_px), AnalysisSettings()).summary.particles.table
    rows = table.rows()
    assert len(rows) == len(table) == 3
    assert rows == [table.row(i) for i in range(len(table))]
    assert all(isinstance(r.id, int) and isinstance(r.touches_edge, bool) for r in rows)
    if nm_per_px:
        assert rows[1].centroid_x_nm == pytest.approx((table.centroid_x_px[1] + 0.5) * nm_per_px)
    else:
        assert rows[1].centroid_x_nm is None and rows[1].centroid_y_nm is None


@pytest.mark.parametrize("scale, dtype", [(1.0, np.uint16), (2.5, np.float32), (0.5, np.uint8), (1.0, ">u2"),
                                          (2.5, np.float16)])
def test_confidence_and_intensity_compiled_equal_label_means(monkeypatch, scale, dtype):
    """One compiled pass (kernels.label_sums) gives label_means' values bit for bit, the frame at the grid's size,
    larger (sampled at grid-pixel centres) or smaller; a label without pixels reads 0. Pixels numba cannot read
    (big-endian, float16) take the numpy path."""
    from copilot.analysis.kernels import kernel
    from copilot.analysis.particles import confidence_and_intensity

    if kernel("label_sums") is None:
        pytest.skip("numba not installed: only numpy runs")
    inst = discs((60, 80), [(15, 15), (30, 50), (45, 20)], 7)
    inst[inst == 2] = 0  # label 2 has no pixels
    seg = segmentation_from_instances(inst, 0.5, scale)
    rng = np.random.default_rng(3)
    pixels = (rng.random(seg.frame.pixels.shape) * 200).astype(dtype)
    seg = Segmentation(Frame(pixels, 0.5, stream="t", frame_id="f", origin="mem"), seg.probabilities, seg.embedding,
                       CLASSES, "m", "1", "test", frame_px_per_px=scale)
    foreground = 1.0 - seg.probabilities[0]
    fast = confidence_and_intensity(seg, inst, 3, foreground)
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = confidence_and_intensity(seg, inst, 3, foreground)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    assert fast[0][1] == 0 and fast[0][0] > 0.9 and fast[1][0] > 0


@pytest.mark.parametrize("scale", [2.5, 0.5])
def test_measurement_with_kernels_equals_numpy(monkeypatch, scale):
    """The whole particle measurement (labels, the outlines' tables, the packed outlines handed between processes)
    is the same bit for bit with the compiled kernels and with numpy alone, on soft probabilities with touching
    pairs, on a frame larger and smaller than the grid."""
    from dataclasses import fields as columns

    from copilot.analysis.geometry import PackedOutlines
    from copilot.analysis.kernels import kernel

    if kernel("tile_runs") is None:
        pytest.skip("numba not installed: only numpy runs")
    rng = np.random.default_rng(5)
    centres = rng.uniform(10, 150, (40, 2))
    inst = np.zeros((160, 160), np.int32)
    yy, xx = np.mgrid[:160, :160]
    for i, ((cy, cx), r) in enumerate(zip(centres, rng.uniform(2.5, 9, 40)), 1):
        inst[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (inst == 0)] = i
    seg = segmentation_from_instances(inst, 0.4, scale)
    probs = np.stack([ndi.gaussian_filter(p, 1.2) for p in seg.probabilities]).astype(np.float32)
    seg = Segmentation(seg.frame, probs / probs.sum(axis=0), seg.embedding, CLASSES, "m", "1", "test",
                       frame_px_per_px=scale)
    fast = measure_particles(seg, AnalysisSettings(min_area_nm2=0))
    monkeypatch.setenv("COPILOT_NUMBA", "0")
    slow = measure_particles(seg, AnalysisSettings(min_area_nm2=0))
    assert slow.refined.flat is None
    np.testing.assert_array_equal(fast.instances, slow.instances)
    a, b = fast.summary.particles.table, slow.summary.particles.table
    assert len(a) > 25
    for c in columns(a):
        np.testing.assert_array_equal(getattr(a, c.name), getattr(b, c.name))
    pa, pb = PackedOutlines.of(fast.refined), PackedOutlines.of(slow.refined)
    np.testing.assert_array_equal(pa.masks, pb.masks)
    np.testing.assert_array_equal(pa.shapes, pb.shapes)
