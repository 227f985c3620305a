"""The result document contract: the committed JSON Schema stays in sync, documents round-trip through JSON."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from copilot.document.schema import (
    SCHEMA_FILE,
    SCHEMA_ID,
    BinaryPart,
    Interval,
    Particle,
    ResultDocument,
    Sufficiency,
    json_schema,
)


def test_committed_json_schema_matches_the_models():
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json_schema(), (
        "copilot/document/copilot.result.1.schema.json is stale: regenerate it with "
        "python -c 'from copilot.document.schema import write_json_schema; write_json_schema()'"
    )
    assert committed["$id"] == SCHEMA_ID


def test_result_document_round_trips_through_json(doc_factory):
    doc = doc_factory("cam1", 3)
    summary = doc.measurements.particles
    summary.d50_ci = Interval(low=3.9, high=4.6)
    summary.particles = [
        Particle(id=1, centroid_x_px=10.5, centroid_y_px=20.0, centroid_x_nm=2.625, centroid_y_nm=5.0, area=13.9,
                 ecd=4.2, feret_max=4.8, feret_min=3.7, aspect_ratio=1.2, circularity=0.9, solidity=0.97,
                 mean_intensity=812.5, confidence=0.93, touches_edge=False),
    ]
    doc.measurements.sufficiency = [
        Sufficiency(quantity="d50", estimate=4.2, half_width_rel=0.08, target_rel=0.05, enough=False,
                    more_objects_needed=150, more_frames_needed=3, scope="series"),
    ]
    doc.parts = [BinaryPart(name="labels", dtype="uint16", shape=[64, 80])]
    text = doc.to_json()
    data = json.loads(text)
    assert data["schema"] == SCHEMA_ID and "schema_" not in data
    back = ResultDocument.from_json(text)
    assert back == doc
    assert back.to_json() == text
    assert back.processed_at.tzinfo is not None


def test_a_stored_document_with_only_engine_parses_and_gets_backend(doc_factory):
    """Documents stored before the rename name the backend ``model.engine`` only; new ones carry both, equal."""
    data = json.loads(doc_factory("cam1", 1).to_json())
    assert data["model"]["backend"] == data["model"]["engine"] == "onnxruntime-cpu"
    del data["model"]["backend"]
    old = ResultDocument.from_json(json.dumps(data))
    assert old.model.backend == "onnxruntime-cpu" and json.loads(old.to_json())["model"]["backend"] == "onnxruntime-cpu"
    data["model"]["backend"] = "tensorrt"  # the deprecated name must not say something else
    with pytest.raises(ValidationError, match="model.backend 'tensorrt' and model.engine 'onnxruntime-cpu' differ"):
        ResultDocument.from_json(json.dumps(data))


def test_the_json_schema_accepts_backend_or_engine_but_not_neither():
    jsonschema = pytest.importorskip("jsonschema")
    model_ref = {**json_schema()["$defs"]["ModelRef"], "$defs": {}}
    for model in ({"name": "m", "version": "1", "backend": "b", "engine": "b"},
                  {"name": "m", "version": "1", "engine": "b"}, {"name": "m", "version": "1", "backend": "b"}):
        jsonschema.validate(model, model_ref)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "m", "version": "1"}, model_ref)
