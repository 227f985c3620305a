"""The numbers beside the frame: count, the headline with its 95 % interval (withheld on FAIL), density,
sufficiency, trend, calibration and model, and this session's recent alerts with their time and frame."""

from __future__ import annotations

import numpy as np

from copilot.ui.qt import AMBER, DIM, FG, QtCore, QtWidgets, esc, hex_rgb, label
from copilot.ui.raster import EDGE_RGB, label_colours, size_colour, size_range
from copilot.ui.text import VERDICT_COLOURS, alert_text, fmt_num, headline, is_enough

MAX_ALERTS_SHOWN = 3


class Numbers(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        root = QtWidgets.QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(4)
        self.count = label("", 22, bold=True)
        self.stats = label("", 12, wrap=True)
        self.stats.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.alerts = label("", 10, wrap=True)
        self.legend = label("", 10, colour=DIM, wrap=True)
        for w in (self.count, self.stats, self.alerts, self.legend):
            w.setMinimumWidth(120)
            root.addWidget(w)

    def paint(self, st, lines: dict[str, str], alerts: list[dict], live: bool) -> None:
        doc = st.doc
        p = doc.measurements.particles
        h = headline(doc)
        fg = FG if live else DIM
        self.count.setStyleSheet(f"color: {fg};")
        g = doc.measurements.grains
        if p is not None or g is not None:
            n, what = (p.count, "particles") if p is not None else (g.count, "grains")
            self.count.setText(f"{n} <span style='font-size:12pt; font-weight:normal'>{what}</span>")
        elif h.value is not None and not lines["withheld"]:
            self.count.setText(f"{h.value * 100:.1f} % <span style='font-size:12pt; font-weight:normal'>"
                               f"{esc(h.label)}</span>")
        else:
            self.count.setText("–")
        if lines["withheld"]:
            head = (f"<span style='font-size:15pt; color:{DIM}'><b>{esc(h.label)} withheld</b></span><br>"
                    f"<span style='color:{VERDICT_COLOURS['fail']}'>{esc(lines['withheld'])}</span>")
        else:
            head = f"<span style='font-size:15pt'><b>{esc(h.label)} {esc(lines['value'])}</b></span>"
            if lines["interval"]:
                head += f"<br><span style='color:{DIM}'>{esc(lines['interval'])}</span>"
        rows = [head]
        if p is not None:
            rows.append(f"{esc(lines['edge'])} · density {esc(lines['density'])}")
        elif g is not None:
            rows.append(f"{esc(lines['count'])} · {esc(lines['density'])}")
        if lines["inclusions"]:
            rows.append(esc(lines["inclusions"]))
        suff_colour = VERDICT_COLOURS["ok"] if is_enough(doc) else AMBER
        rows.append(f"sufficiency: <b style='color:{suff_colour if live else DIM}'>{esc(lines['sufficiency'])}</b>")
        rows.append(esc(lines["trend"]))
        rows.append(f"<span style='color:{DIM}'>{esc(lines['calibration'])} · {esc(lines['model'])}</span>")
        self.stats.setText("<br>".join(rows))
        self.stats.setStyleSheet(f"color: {fg};")
        self.alerts.setText(alerts_html(alerts, live))
        self.alerts.setVisible(bool(alerts))
        self.legend.setText(legend_html(doc, st))


def alerts_html(alerts: list[dict], live: bool = True) -> str:
    """Newest last, at most ``MAX_ALERTS_SHOWN``: warnings amber with ⚠, information dim with ℹ (all dim when the
    daemon is not live)."""
    out = []
    for a in alerts[-MAX_ALERTS_SHOWN:]:
        info = a.get("severity") == "info"
        colour, mark = DIM if info or not live else AMBER, "ℹ" if info else "⚠"
        out.append(f"<span style='color:{colour}'>{mark} {esc(alert_text(a))}</span>")
    return "<br>".join(out)


def legend_html(doc, st) -> str:
    if doc.measurements.task == "phases" and doc.measurements.phases is not None:
        n = len(doc.measurements.phases.phases)
        lut = label_colours(doc, max(n - 1, 1))
        items = []
        for k, ph in enumerate(doc.measurements.phases.phases):
            sw = "&nbsp;" * 4
            colour = "transparent" if k == 0 else hex_rgb(lut[k])
            items.append(f"<span style='background:{colour}; border:1px solid {DIM}'>{sw}</span> "
                         f"{esc(ph.name)} {ph.area_fraction * 100:.1f} %")
        return " &nbsp; ".join(items)
    rng = size_range(doc)
    grains = doc.measurements.grains is not None
    if rng is None or st.labels is None and (grains or not doc.measurements.particles.particles):
        return ""
    unit = "µm" if grains else doc.measurements.length_unit
    swatches = "".join(f"<span style='background:{hex_rgb(size_colour(t))}'>&nbsp;&nbsp;&nbsp;</span>"
                       for t in np.linspace(0, 1, 7))
    return (f"{'fill' if grains else 'outline'} colour = ECD: {fmt_num(rng[0])} {swatches} {fmt_num(rng[1])} {unit}"
            f" &nbsp;<span style='background:{hex_rgb(EDGE_RGB)}'>&nbsp;&nbsp;&nbsp;</span> cut by the edge")
