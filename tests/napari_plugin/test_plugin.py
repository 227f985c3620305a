"""The napari plugin against real napari (the viewer model; no OpenGL canvas here), real npe2 manifest resolution,
real files from `copilot analyze`, and a real publisher for the live widget."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

import copilot  # noqa: E402
from copilot.cli import main  # noqa: E402
from copilot.publish.preview import make_preview  # noqa: E402
from copilot.publish.publisher import Publisher  # noqa: E402
from tests.conftest import disc_image  # noqa: E402

MANIFEST = Path(copilot.__file__).parent / "napari_plugin" / "napari.yaml"
CENTRES = [(40, 40), (40, 150), (150, 40), (150, 150), (200, 220)]
RADII = [6, 8, 10, 12, 14]


def endpoints() -> tuple[str, str]:
    import zmq

    ctx = zmq.Context.instance()
    ports = []
    for _ in range(2):
        s = ctx.socket(zmq.PUB)
        ports.append(s.bind_to_random_port("tcp://127.0.0.1"))
        s.close(linger=0)
    return tuple(f"tcp://127.0.0.1:{p}" for p in ports)


def discs() -> np.ndarray:
    img = np.full((256, 256), 100, np.uint16)
    for c, r in zip(CENTRES, RADII):
        img = np.maximum(img, disc_image(img.shape, [c], r))
    return img


@pytest.fixture
def results_folder(tmp_path, threshold_model_dir) -> Path:
    acq = tmp_path / "acq"
    acq.mkdir()
    tifffile.imwrite(acq / "f0.tif", discs(), imagej=True, resolution=(2.0, 2.0), metadata={"unit": "nm"})
    out = tmp_path / "out"
    assert main(["analyze", str(acq), "--model", str(threshold_model_dir), "--out", str(out), "--save-masks"]) == 0
    return out


def test_manifest_reader_gives_frame_labels_and_particle_features(results_folder):
    from napari.components import ViewerModel
    from npe2.io_utils import _read

    pm = npe2.PluginManager()
    pm.register(npe2.PluginManifest.from_file(MANIFEST))
    pm.activate("microscope-copilot")
    layers = _read([str(results_folder)], plugin_name="microscope-copilot", stack=False, _pm=pm)
    assert [kind for *_, kind in layers] == ["image", "labels"]
    (image, image_kw, _), (labels, labels_kw, _) = layers
    assert image.shape == labels.shape == (256, 256) and image_kw["scale"] == (0.5, 0.5)
    table = labels_kw["features"]
    assert sorted(table["index"]) == list(range(1, len(CENTRES) + 1)) == sorted(np.unique(labels)[1:])
    assert sorted(table["ecd_nm"]) == pytest.approx([r * 2 * 0.5 for r in RADII], abs=0.5)

    viewer = ViewerModel()
    layer = viewer.add_labels(labels, **{k: v for k, v in labels_kw.items()})
    biggest = int(table.loc[table["ecd_nm"].idxmax(), "index"])
    smallest = int(table.loc[table["ecd_nm"].idxmin(), "index"])
    big, small = layer.colormap.map(np.array([biggest, smallest]))
    assert not np.allclose(big, small) and layer.colormap.map(np.array([0]))[0][3] == 0  # by ECD; background clear
    y, x = np.argwhere(labels == biggest)[0]
    assert "ecd_nm" in layer.get_status((y, x))["coordinates"]


def test_reader_declines_other_paths(tmp_path):
    from copilot.napari_plugin.reader import get_reader

    assert get_reader(str(tmp_path)) is None and get_reader(str(tmp_path / "x.tif")) is None


def test_live_widget_shows_the_newest_frame_without_blocking(threshold_model_dir):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from napari.components import ViewerModel
    from qtpy.QtWidgets import QApplication

    from copilot.frame import Frame
    from copilot.napari_plugin.live import IMAGE_LAYER, LABELS_LAYER
    from copilot.napari_plugin.widget import LiveWidget

    app = QApplication.instance() or QApplication([])
    pub_ep, snap_ep = endpoints()
    viewer = ViewerModel()
    widget = LiveWidget(viewer)
    widget.endpoint.setText(pub_ep)
    widget.snapshot.setText(snap_ep)
    analysis = copilot.analyze_image(discs(), nm_per_px=0.5, model=threshold_model_dir)
    doc = analysis.document
    labels = analysis.labels[::2, ::2].astype(np.uint16)  # as published: on the model's (coarser) grid
    with Publisher(pub_ep, snap_ep) as pub:
        pub.publish_result(doc.model_copy(), {"labels": labels})  # the snapshot serves it to the late widget
        frame = Frame(discs(), 0.5, doc.stream, doc.frame_id, "test")
        pub.publish_preview(doc.stream, *make_preview(frame, max_px=128))
        widget.toggle()
        deadline = time.monotonic() + 20
        while LABELS_LAYER not in viewer.layers and time.monotonic() < deadline:
            app.processEvents()  # the viewer's own loop keeps running while the feed waits
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        while IMAGE_LAYER not in viewer.layers and time.monotonic() < deadline:
            pub.publish_preview(doc.stream, *make_preview(frame, max_px=128))
            app.processEvents()
            time.sleep(0.1)
        shown = widget.status.text()
        widget.disconnect_feed()
    assert doc.frame_id in shown and "verdict" in shown
    live = viewer.layers[LABELS_LAYER]
    assert live.data.shape == (128, 128) and live.scale[0] == pytest.approx(1.0)  # 2 frame px of 0.5 nm
    assert sorted(live.features["index"]) == list(range(1, len(CENTRES) + 1))
    assert viewer.layers[IMAGE_LAYER].data.shape == (128, 128) and viewer.layers[IMAGE_LAYER].scale[0] == 1.0
