"""The command line: user errors are one line naming what to change (exit code 2), -v adds the traceback; every
option has a help text."""

from __future__ import annotations

import argparse

import pytest
import zmq

from copilot.cli import main
from copilot.cli.commands import build_parser


def all_parsers(parser: argparse.ArgumentParser, name: str = "copilot"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from all_parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help_and_no_help_prints_a_doubled_percent():
    missing = [f"{name} {a.option_strings or a.dest}" for name, parser in all_parsers(build_parser())
               for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert missing == []
    for name, parser in all_parsers(build_parser()):
        assert "%%" not in parser.format_help(), name


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def one_line_error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"copilot {argv[0]}: error: "), lines
    return lines[0]


def test_missing_model(tmp_path, capsys):
    (tmp_path / "a.tif").write_bytes(b"")
    line = one_line_error(capsys, "analyze", str(tmp_path / "a.tif"), "--model", "no-such-model", "--out",
                          str(tmp_path / "out"))
    assert "no model 'no-such-model'" in line and "COPILOT_ENGINES" in line


def test_missing_file(tmp_path, capsys):
    line = one_line_error(capsys, "analyze", str(tmp_path / "gone.tif"), "--out", str(tmp_path / "out"))
    assert f"{tmp_path / 'gone.tif'}: no such file or folder" in line


def test_output_folder_that_cannot_be_made(tmp_path, capsys):
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "plain-file").write_text("x")
    line = one_line_error(capsys, "analyze", str(tmp_path / "a.tif"), "--out", str(tmp_path / "plain-file" / "out"))
    assert f"cannot create the output folder {tmp_path / 'plain-file' / 'out'}" in line


def test_bad_config_value_and_missing_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[pipeline]\nqueue_size = 0\n")
    line = one_line_error(capsys, "config", "--config", str(cfg))
    assert "pipeline.queue_size" in line and "(got 0)" in line
    line = one_line_error(capsys, "config", "--config", str(tmp_path / "absent.toml"))
    assert "absent.toml: cannot read the config" in line


def test_state_dir_that_cannot_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    line = one_line_error(capsys, "run", "--watch", str(tmp_path), "--state-dir", str(tmp_path / "file" / "state"))
    assert "--state-dir" in line


def test_port_in_use(tmp_path, capsys, threshold_model_dir):
    ctx = zmq.Context.instance()
    taken = ctx.socket(zmq.PUB)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\nname = "{threshold_model_dir}"\nbackend = "onnxruntime-cpu"\n'
                   f'[publish]\npub_endpoint = "tcp://127.0.0.1:{port}"\nsnapshot_endpoint = "tcp://127.0.0.1:{port + 1}"\n')
    (tmp_path / "acq").mkdir()
    try:
        line = one_line_error(capsys, "run", "--config", str(cfg), "--watch", str(tmp_path / "acq"),
                              "--state-dir", str(tmp_path / "state"))
    finally:
        taken.close(linger=0)
    assert f"tcp://127.0.0.1:{port} is already in use" in line and "publish.pub_endpoint" in line


def test_verbose_shows_the_traceback_before_the_line(tmp_path, capsys):
    for argv in (["-v", "analyze"], ["analyze", "-v"]):
        assert main([*argv, str(tmp_path / "gone.tif"), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("copilot analyze: error:")


def test_a_bug_keeps_its_traceback(monkeypatch):
    import copilot.cli.commands as cli

    def broken(args):
        raise KeyError("a bug, not the user's doing")

    monkeypatch.setattr(cli, "cmd_config", broken)
    with pytest.raises(KeyError):
        main(["config"])


def test_option_values_and_endpoints_are_named(tmp_path, capsys):
    (tmp_path / "a.tif").write_bytes(b"")
    line = one_line_error(capsys, "analyze", str(tmp_path / "a.tif"), "--out", str(tmp_path / "o"), "--threads", "0")
    assert "model.threads" in line and "(got 0) (from the command line)" in line
    line = one_line_error(capsys, "top", "--endpoint", "not-an-endpoint", "--exit-after", "1")
    assert "'not-an-endpoint' is not a usable ZeroMQ endpoint" in line and "tcp://HOST:PORT" in line


def test_demo_never_empties_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "keep.tif").write_bytes(b"someone's data")
    line = one_line_error(capsys, "demo", "--state-dir", str(tmp_path), "--frames", "1", "--no-live")
    assert "keep.tif" in line and "--state-dir" in line
    assert (tmp_path / "keep.tif").read_bytes() == b"someone's data"


def test_engine_is_a_hidden_alias_of_backend(threshold_model_dir, tmp_path, capsys):
    """Scripts written before the rename pass --engine; it still names the backend, and help shows --backend."""
    common = ["--model", str(threshold_model_dir), "--state-dir", str(tmp_path / "state")]
    assert main(["engines", "verify", "--engine", "torch-cpu", *common]) == 2  # auto (the default) would load
    assert "cannot load torch-cpu" in capsys.readouterr().out
    assert main(["engines", "verify", "--engine", "onnxruntime-cpu", "--tiles", "1", *common]) == 0
    assert "│ backend " in capsys.readouterr().out
    verify = dict(all_parsers(build_parser()))["copilot engines verify"]
    assert "--backend" in verify.format_help() and "--engine" not in verify.format_help()


@pytest.mark.parametrize("given, expected", [(None, "1"), ("3", "3")])
def test_the_command_keeps_numpy_to_one_blas_thread_unless_told(given, expected):
    """`copilot` sets OPENBLAS_NUM_THREADS=1 before numpy loads (spinning BLAS threads took the measure workers'
    cores), and keeps an operator's own value; its measure worker processes inherit the same."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = ("import copilot.cli, os, numpy; from copilot.measure_workers import _child_env; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], _child_env()['OPENBLAS_NUM_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [expected, expected]
