"""`copilot top` against a real daemon: the terminal text carries what was published."""

from __future__ import annotations

import io

from rich.console import Console

from copilot.publish.subscriber import Subscriber
from copilot.ui.text import fmt_num
from copilot.ui.top import TopModel, run_top


def test_top_shows_count_and_d50_of_a_live_result(daemon):
    with Subscriber(daemon.pub, daemon.snap, topics=("result.",)) as sub:
        doc = next(sub.results(timeout_s=10)).doc  # the daemon's latest, from its snapshot
    console = Console(record=True, width=80, file=io.StringIO(), color_system=None)  # an SSH terminal
    assert run_top(daemon.pub, daemon.snap, exit_after=1, console=console) == 0
    text = console.export_text()
    p = doc.measurements.particles
    assert f" {p.count} " in text
    assert f"{fmt_num(p.d50)} nm" in text and "95 % interval " in text and " ± " not in text
    assert doc.verdict.level.upper() in text
    assert "ms frame→result" in text  # end-to-end latency
    assert doc.frame_id in text


def test_top_table_has_trend_sufficiency_and_alerts(daemon):
    with Subscriber(daemon.pub, daemon.snap, topics=("result.",)) as sub:
        doc = next(sub.results(timeout_s=10)).doc
    model = TopModel()
    model.add(doc)
    d2 = doc.model_copy(deep=True, update={"frame_id": "next", "processed_at": doc.processed_at.replace(year=2100)})
    d2.series.alerts = []
    from copilot.document.schema import Alert, Interval, Trend

    d2.series.trends = [Trend(quantity="d50", unit="nm/min", slope=0.42, n_frames=8, trending=True,
                              slope_ci=Interval(low=0.3, high=0.5))]
    d2.series.alerts.append(Alert(kind="jump", quantity="ecd_mean", frame_id="next", message="mean particle size "
                                  "jumped up to 99 nm (expected 7 nm from the last 6 frames)"))
    model.add(d2)
    console = Console(record=True, width=220, file=io.StringIO(), color_system=None)
    console.print(model.render())
    text = console.export_text()
    assert "sufficiency" in text and ("enough" in text or "more particles" in text)
    assert "+0.42 nm/min ▲ (95 % CI +0.3 to +0.5)" in text  # the trend's slope, unit and interval
    assert any(c in text for c in "▁▂▃▄▅▆▇█")  # the D50 sparkline
    assert " · next · mean particle size jumped up to 99 nm" in text and "last alerts" in text
