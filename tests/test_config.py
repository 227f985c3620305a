import os
import subprocess
import sys
from pathlib import Path

import pytest

from copilot.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_validate():
    for path in sorted((ROOT / "configs").glob("*.toml")):
        s = load_settings(path)
        assert s.publish.pub_endpoint.startswith("tcp://127.0.0.1"), "sockets bind to loopback by default"


def test_bad_field_is_named(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[source]\nsettle_s = -1\n[model]\nthreds = 2\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    msg = str(err.value)
    assert "source.settle_s" in msg and "model.threds" in msg and str(cfg) in msg


def test_overrides_apply_and_none_is_ignored(tmp_path):
    s = load_settings(None, {"source": {"watch": str(tmp_path), "poll": None}, "daemon": {"stream": "titan"}})
    assert s.source.watch == tmp_path and s.source.poll is False and s.daemon.stream == "titan"


def test_unparseable_toml_names_the_file(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[source\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_settings(cfg)


def test_invalid_values_fit_on_one_line_with_what_was_given(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[model]\nthreads = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "model.threads" in msg and "'x'" in msg


def test_loading_the_config_does_not_import_onnxruntime():
    code = ("import sys; from copilot.config import load_settings; load_settings(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'torch', 'PySide6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "[]"


def test_engine_is_read_as_backend_with_a_warning_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("copilot.config._warned", set())
    cfg = tmp_path / "old.toml"
    cfg.write_text('[model]\nengine = "onnxruntime-cpu"\n')
    with caplog.at_level("WARNING", logger="copilot.config"):
        assert load_settings(cfg).model.backend == "onnxruntime-cpu"
        assert load_settings(cfg).model.backend == "onnxruntime-cpu"
    assert [r.getMessage() for r in caplog.records].count(
        "[model] engine is now [model] backend: rename it in your config (engine is still read)") == 1


def test_engine_and_backend_must_agree_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "both.toml"
    cfg.write_text('[model]\nengine = "onnxruntime"\nbackend = "onnxruntime-cpu"\n')  # the same backend
    assert load_settings(cfg).model.backend == "onnxruntime-cpu"
    cfg.write_text('[model]\nengine = "tensorrt"\nbackend = "onnxruntime-cpu"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "[model] engine = 'tensorrt' and [model] backend = 'onnxruntime-cpu' disagree" in str(err.value)
    cfg.write_text('[model]\nengine = "tensorrt"\n')
    assert load_settings(cfg, {"model": {"backend": "torch-cpu"}}).model.backend == "torch-cpu"
