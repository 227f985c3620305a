"""`copilot demo` pieces that need no model run: the growth budget, the summary without FAIL frames, a second demo
refused in one line, SIGTERM ending like Ctrl+C."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from copilot import demo
from copilot.document.schema import Verdict
from tests.publish.conftest import make_doc

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_growth_budget_is_the_same_whatever_the_frame_count():
    for frames in (40, 200):
        rate = demo.growth_rate(frames, 0.5)
        minutes = (frames - 1) * 0.5 * demo.TIME_SCALE / 60
        assert rate * minutes == pytest.approx(demo.GROWTH_BUDGET_NM)


def test_summary_leaves_fail_frames_out():
    docs = []
    for i in range(12):
        d = make_doc("demo", i, acquired_at=T0 + timedelta(minutes=i))
        fail = i >= 9  # the model failed late in the run: its D50 collapsed
        d.measurements.particles.d50 = 7.0 if fail else 6.0 + 0.5 * i
        docs.append(d.model_copy(update={"verdict": Verdict(level="fail" if fail else "ok")}))
    lines = demo.summary_lines(docs)
    assert lines[0] == "12 frames analysed; verdicts {'ok': 9, 'warn': 0, 'fail': 3}"
    assert "D50 6.00 nm → 10.00 nm over 9 frames (3 FAIL frames left out)" in lines[1]
    assert "growth +0.50 nm/min" in lines[1] and "95 % CI +0.50 to +0.50" in lines[1]


def test_an_endpoint_in_use_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(demo.DemoError, match=f"tcp://127.0.0.1:{port} is in use — another `copilot demo`"):
            demo.check_free(f"tcp://127.0.0.1:{port}")
    demo.check_free(f"tcp://127.0.0.1:{port}")  # free again


def test_sigterm_ends_the_demo_like_ctrl_c():
    previous = demo._on_sigterm()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    finally:
        signal.signal(signal.SIGTERM, previous)
