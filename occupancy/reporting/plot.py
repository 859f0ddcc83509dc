"""`occupancy report --plot`: one 1200x900 PNG, a weekday x hour heatmap above a daily line chart (and a
heatmap of distinct voices between them where the log has that figure)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import StorageError
from .summary import WEEKDAYS, Report, group_hours, periods, summarize

log = logging.getLogger(__name__)

FIGURE_INCHES = (12.0, 9.0)
FIGURE_DPI = 100  # FIGURE_INCHES x FIGURE_DPI = 1200 x 900 pixels


def plot_report(report: Report, path: str | Path) -> None:
    """One PNG, FIGURE_INCHES at FIGURE_DPI: a weekday x hour heatmap above a daily line chart, and where the
    range has the distinct-voices figure a second heatmap of it between them."""
    save_figure(report_figure(report), path)


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib Figure as PNG; a path that cannot be written is a one-line StorageError."""
    try:
        fig.savefig(path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write the picture ({exc.strerror or exc})") from None
    log.info("wrote %s", path)


def report_figure(report: Report):
    """The picture plot_report writes, as a matplotlib Figure."""
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, no display, no global state

    fig = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    if report.voices:
        heat, voices, daily = fig.subplots(3, 1, height_ratios=[3, 3, 2])
    else:
        (heat, daily), voices = fig.subplots(2, 1, height_ratios=[3, 2]), None
    span = f"{report.first:%a %d %b %Y} to {report.last:%a %d %b %Y}"
    fig.suptitle(f"{report.venue or 'Traffic'}: people speaking at once, {span}, {report.zone}", fontsize=14)
    _heatmap(fig, heat, report, "mean_count", "YlOrRd", "Mean by weekday and hour", "people speaking at once (mean)")
    if voices is not None:
        _heatmap(fig, voices, report, "mean_distinct_voices", "PuBu",
                 "Distinct voices by weekday and hour (approximate)", "different people heard (mean)")

    daily_chart(daily, report)
    return fig


def daily_chart(daily, report: Report) -> None:
    """Into the axes `daily`: each day's mean over its monitored time and its busiest well-covered hour;
    days with low coverage as open circles."""
    import numpy as np

    days = group_hours(report.hours, "day")
    dates = list(days)
    day_rows = [summarize(label, group, report.min_coverage) for label, group in days.values()]
    busiest_hour = [
        max((p["mean_count"] for p in periods(group, "hour", report.min_coverage) if not p["low_coverage"]), default=np.nan)
        for _, group in days.values()
    ]
    daily.plot(dates, [d["mean_count"] for d in day_rows], "o-", label="mean over the monitored time")
    daily.plot(dates, busiest_hour, "s--", label="busiest hour of the day")
    poor = [(d, r["mean_count"]) for d, r in zip(dates, day_rows) if r["low_coverage"]]
    if poor:
        daily.plot(*zip(*poor), "o", mfc="white", color="C0", label="low coverage")
    daily.set_ylim(bottom=0)
    daily.set_ylabel("people speaking at once")
    daily.set_xlabel(f"day, {report.zone}")
    daily.set_title("Daily occupancy")
    daily.grid(alpha=0.3)
    daily.legend(loc="upper left")
    if len(dates) == 1:
        daily.set_xticks(dates, [f"{dates[0]:%a %d %b}"])
    else:
        import matplotlib.dates as mdates

        daily.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))


def weekday_hour_cells(report: Report, key: str):
    """[7, 24] arrays, weekday (Monday first) x hour: the mean of a period measure (`key`; NaN where not
    monitored or unknown), and whether that cell's coverage is low."""
    import numpy as np

    cells = np.full((7, 24), np.nan)
    low = np.zeros((7, 24), dtype=bool)
    for (weekday, hour, _minute), (label, group) in group_hours(report.hours, "weekday-hour").items():
        summary = summarize(label, group, report.min_coverage)
        value = summary[key]
        cells[weekday, hour] = np.nan if value is None else value
        low[weekday, hour] = summary["low_coverage"]
    return cells, low


def _heatmap(fig, ax, report: Report, key: str, cmap: str, title: str, unit: str) -> None:
    """The mean of a period measure (`key`, None where unknown) per weekday x hour; hatched where coverage is low."""
    import numpy as np
    from matplotlib.patches import Rectangle

    cells, low = weekday_hour_cells(report, key)
    top = max(1.0, float(np.nanmax(cells)))
    image = ax.imshow(np.ma.masked_invalid(cells), aspect="auto", cmap=cmap, vmin=0, vmax=top)
    ax.set_facecolor("#e8e8e8")
    for weekday, hour in zip(*np.nonzero(~np.isnan(cells))):
        value = cells[weekday, hour]
        ax.text(hour, weekday, f"{value:.1f}", ha="center", va="center", fontsize=7,
                color="white" if value > 0.6 * top else "black")
        if low[weekday, hour]:
            ax.add_patch(Rectangle((hour - 0.5, weekday - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey", lw=0))
    ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xlabel(f"hour of day, {report.zone}")
    ax.set_title(f"{title} (grey: not monitored; hatched: under {report.min_coverage:g} monitored min per hour)")
    fig.colorbar(image, ax=ax, label=unit)
