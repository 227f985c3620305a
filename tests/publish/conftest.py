"""Fixtures for the publish tests: result documents and publishers on free 127.0.0.1 ports."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from copilot.publish.publisher import Publisher
from copilot.document.schema import (
    Calibration,
    ImageInfo,
    Measurements,
    ModelRef,
    ParticleSummary,
    Reliability,
    ResultDocument,
    Verdict,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def make_doc(stream: str = "cam1", n: int = 0, **overrides) -> ResultDocument:
    """A realistic result document; frame ``n`` of ``stream`` is processed ``n`` ms after T0."""
    doc = ResultDocument(
        stream=stream,
        frame_id=f"{stream}-{n:05d}",
        origin=f"/data/{stream}/frame_{n:05d}.tif",
        acquired_at=T0 + timedelta(milliseconds=n),
        processed_at=T0 + timedelta(milliseconds=n, microseconds=500),
        calibration=Calibration(nm_per_px=0.25, calibrated=True, source="tiff-resolution", length_unit="nm"),
        image=ImageInfo(height_px=64, width_px=80, dtype="uint16"),
        model=ModelRef(name="particles-stem", version="1.0.0", backend="onnxruntime-cpu"),
        timings_ms={"read": 1.5, "infer": 12.0, "analyze": 2.0, "total": 15.5},
        measurements=Measurements(
            task="particles",
            length_unit="nm",
            particles=ParticleSummary(count=2, count_edge=1, count_sized=1, ecd_mean=4.2, d50=4.2),
        ),
        reliability=Reliability(predicted_f1=0.91, image_confidence=0.88, shift_score=0.1, quality={"focus": 0.7}),
        verdict=Verdict(level="ok"),
    )
    return doc.model_copy(update=overrides) if overrides else doc


@pytest.fixture
def doc_factory():
    return make_doc


@pytest.fixture
def publisher():
    pub = Publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", hwm=100)
    yield pub
    pub.close()


@pytest.fixture
def sync():
    """Publish status messages until ``sub`` receives one: its subscription is then live (PUB/SUB slow joiner)."""

    def _sync(pub: Publisher, sub, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pub.publish_status({"sync": True})
            msg = sub.recv(0.05)
            while msg is not None and msg.topic != "status":
                msg = sub.recv(0.05)
            if msg is not None:
                # drain the extra sync messages still in flight
                while (m := sub.recv(0.05)) is not None and m.topic == "status":
                    pass
                if m is not None:
                    raise AssertionError(f"unexpected message while syncing: {m.topic}")
                return
        raise AssertionError("subscriber never received a status message")

    return _sync
