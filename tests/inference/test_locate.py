"""The model search path: COPILOT_ENGINES, the user folder, the package (or checkout), the system share folder."""

from __future__ import annotations

import os
import shutil

import pytest

from copilot.cli import main
from copilot.inference.card import load_card
from copilot.inference.locate import ENGINES_DIR, find_model, find_models, install_model, search_path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.delenv("COPILOT_ENGINES", raising=False)
    return tmp_path / "share" / "copilot" / "engines"


def test_copilot_engines_comes_first_and_shadows(home, threshold_model_dir, tmp_path, monkeypatch):
    second = tmp_path / "second" / "threshold"
    shutil.copytree(threshold_model_dir, second)
    monkeypatch.setenv("COPILOT_ENGINES", os.pathsep.join([str(threshold_model_dir.parent), str(second.parent)]))
    assert find_model("threshold") == threshold_model_dir
    found = [m for m in find_models() if m.name == "threshold"]
    assert [(m.where, m.shadowed_by) for m in found] == [("COPILOT_ENGINES", None),
                                                         ("COPILOT_ENGINES", threshold_model_dir)]
    assert search_path()[0].path == threshold_model_dir.parent


def test_install_puts_a_model_in_the_user_folder(home, threshold_model_dir):
    target = install_model(threshold_model_dir)
    assert target == home / "threshold" and sorted(p.name for p in target.iterdir()) == ["card.json", "model.onnx"]
    card, folder = load_card("threshold")
    assert folder == target and card.name == "threshold"
    assert [m.where for m in find_models() if m.name == "threshold"] == ["user"]
    with pytest.raises(FileExistsError, match="--replace"):
        install_model(threshold_model_dir)
    assert install_model(threshold_model_dir, replace=True) == target


def test_install_refuses_a_model_that_does_not_match_its_card(home, threshold_model_dir):
    (threshold_model_dir / "model.onnx").write_bytes(b"not the model the card describes")
    with pytest.raises(ValueError, match="sha256"):
        install_model(threshold_model_dir)
    assert not (home / "threshold").exists()


def test_unknown_model_names_the_choices_and_the_folders_searched(home):
    with pytest.raises(FileNotFoundError) as exc:
        find_model("no-such-model")
    text = str(exc.value)
    assert "'no-such-model'" in text and "COPILOT_ENGINES" in text
    if ENGINES_DIR.is_dir():
        assert "particles-stem" in text and str(ENGINES_DIR) in text


@pytest.mark.skipif(not (ENGINES_DIR / "particles-stem" / "card.json").is_file(), reason="no shipped model here")
def test_engines_list_says_where_each_model_was_found(home, threshold_model_dir, monkeypatch, capsys):
    monkeypatch.setenv("COPILOT_ENGINES", str(threshold_model_dir.parent))
    assert main(["engines", "list", "--model", "threshold", "--state-dir", str(home.parent / "state")]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in out.splitlines()
            if line.count("│") == 4}
    assert rows["threshold"] == "COPILOT_ENGINES"
    assert rows["particles-stem"] == "checkout"


def test_engines_install_command(home, threshold_model_dir, capsys):
    assert main(["engines", "install", str(threshold_model_dir)]) == 0
    assert (home / "threshold" / "card.json").is_file()
    assert str(home / "threshold") in capsys.readouterr().out
