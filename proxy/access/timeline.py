"""The report's timeline chart: items per day, stacked by channel, as a PNG.

Rules this module keeps:
1. matplotlib's object-oriented API only (Figure, the Agg canvas): no pyplot, no global
   backend, no window, nothing left behind between calls.
2. One filled step outline per channel, with steps only where days have items, so the cost
   follows the number of days with contact, not the span: a stray date decades away is cheap.
3. Labels come from the data (channel names), so they are drawn as plain text, never as
   mathtext: a "$" in a channel name cannot break the chart.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

_COLOURS = {"email": "#1f77b4", "sms": "#ff7f0e", "voice": "#2ca02c"}
_OTHERS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def timeline_png(per_day: dict[str, dict[date, int]], *, since: date | None) -> bytes | None:
    """The stacked per-day chart as PNG bytes; None when there is nothing to draw."""
    days = sorted({day for counts in per_day.values() for day in counts})
    if not days:
        return None
    start, end = days[0], days[-1]
    if since is not None and not start <= since <= end:
        since = None  # outside the items' span the marker would only squash the data
    # Steps change only where a day has items: edges at each such day and the day after,
    # as offsets in days from `start`; the steps between are empty days.
    offsets = sorted({(day - start).days + step for day in days for step in (0, 1)})
    step_of = {offset: i for i, offset in enumerate(offsets)}
    span = offsets[-1]
    edges = np.array(offsets, dtype=float)
    fig = Figure(figsize=(11, 4.2), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bottom = np.zeros(len(offsets) - 1)
    others = iter(_OTHERS * (len(per_day) // len(_OTHERS) + 1))
    for channel in sorted(per_day, key=lambda c: (c not in _COLOURS, c)):
        values = np.zeros(len(offsets) - 1)
        for day, n in per_day[channel].items():
            values[step_of[(day - start).days]] += n
        colour = _COLOURS.get(channel) or next(others)
        top = bottom + values
        ax.stairs(top, edges, baseline=bottom, fill=True, color=colour, label=channel or "(none)")
        bottom = top
    if since is not None:
        x = float((since - start).days)
        ax.axvline(x, color="#d62728", linewidth=1, linestyle="--")
        ax.text(x, float(bottom.max()), " no contact", color="#d62728", va="top", fontsize=8)
    ax.set_xlim(0, span)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _day_label(start, x)))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("items per day")
    ax.set_ylim(bottom=0)
    ax.set_axisbelow(True)
    ax.grid(axis="y", linewidth=0.3)
    legend = ax.legend(loc="upper left", fontsize=8)
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _day_label(start: date, offset: float) -> str:
    try:
        return (start + timedelta(days=int(offset))).isoformat()
    except OverflowError:  # a tick past the last representable day
        return ""
