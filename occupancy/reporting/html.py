"""`occupancy report --format html`: the report as one page an owner reads on a phone.

One self-contained file: the styles inline, the daily chart an inline SVG (matplotlib's, as `--plot`
draws it), the weekday x hour heatmap an HTML table of coloured cells (hours down, weekdays across: it
fits a phone's width and its figures stay readable), and the tables `occupancy report` prints. A
Content-Security-Policy forbids every request outside the page, so it shows the same offline, mailed,
or opened from a USB stick, and tells no one it was opened.
"""

from __future__ import annotations

import html
import io
import math

from .plot import daily_chart, weekday_hour_cells
from .render import heading, sections
from .summary import WEEKDAYS, Report

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 16px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 0 12px 24px; max-width: 960px;
       color: #1d1d1f; background: #fff; }
h1 { font-size: 1.35em; margin: 16px 0 4px; } h2 { font-size: 1.1em; margin: 22px 0 6px; }
p.lead { color: #555; margin: 0 0 8px; } p.note { color: #555; font-size: .9em; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 8px; }
.card { background: #f4f4f6; border-radius: 8px; padding: 8px 10px; }
.card b { display: block; font-size: 1.3em; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: .85em; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 6px; text-align: right; white-space: nowrap; border-bottom: 1px solid #e4e4e8; }
th:first-child, td:first-child { text-align: left; }
table.heat th, table.heat td { padding: 3px 2px; }
table.heat td { text-align: center; min-width: 2.1em; border: 1px solid #fff; }
ol.busiest { padding-left: 1.4em; margin: 4px 0; } ol.busiest span { color: #555; }
table.heat td.none { background: #e8e8e8; color: #999; }
table.heat td.low { background-image: repeating-linear-gradient(45deg, transparent 0 4px, rgba(0,0,0,.18) 4px 5px); }
svg { width: 100%; height: auto; }
details summary { cursor: pointer; font-weight: 600; margin: 18px 0 6px; }
"""


def render_html(report: Report, top: int) -> str:
    title, *about = heading(report)
    tables = sections(report, top)
    traffic, busiest, _quietest, *rest = tables
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>", f'<p class="lead">{_e(about[0])}</p>',
        _cards(report),
        f'<p class="note">{_e(" ".join(about[1:]))} The count is of people speaking at once, not of people '
        "present: a full, quiet room reads 0.</p>",
        f"<h2>{_e(busiest[0])}</h2>", _busiest(report),
        "<h2>A typical week: mean people speaking at once</h2>",
        _heat_table(report, "mean_count", (255, 237, 160), (189, 0, 38)),
    ]
    if report.voices:
        parts += ["<h2>Distinct voices by weekday and hour (approximate)</h2>",
                  _heat_table(report, "mean_distinct_voices", (236, 231, 242), (4, 90, 141))]
    parts += ["<h2>Day by day</h2>", _daily_svg(report)]
    parts += [_table(*section) for section in rest]
    parts += [f"<details><summary>{_e(traffic[0])}</summary>", _table(*traffic, heading=False), "</details>",
              "</body></html>"]
    return "\n".join(parts) + "\n"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cards(report: Report) -> str:
    covered = sum(h.row["seconds"] for h in report.hours)
    mean = sum(h.row["person_seconds"] for h in report.hours) / covered if covered else 0.0
    best = report.busiest[0] if report.busiest else None
    cards = [("monitored", f"{covered / 3600:.1f} h"), ("mean, people speaking at once", f"{mean:.2f}"),
             ("busiest", f"{_period(best)}: mean {best['mean_count']:.2f}" if best else "-")]
    if report.capacity_limit > 0:
        cards.append((f"capacity alerts (above {report.capacity_limit})", str(len(report.alerts))))
    cards.append(("gaps (whole hours not monitored)", str(len(report.gaps))))
    return '<div class="cards">' + "".join(f'<div class="card">{_e(label)}<b>{_e(value)}</b></div>'
                                           for label, value in cards) + "</div>"


def _period(p: dict) -> str:
    """The period's label with its weekday ('Fri 2026-11-20 20:00'), unless the label starts with it."""
    return p["period"] if p["period"].startswith(p["weekday"]) else f"{p['weekday']} {p['period']}"


def _busiest(report: Report) -> str:
    """The busiest well-covered periods as a short list: what a phone shows without scrolling sideways."""
    if not report.busiest:
        return "<p>(none well covered)</p>"
    items = []
    for p in report.busiest:
        extra = "" if p.get("mean_distinct_voices") is None or not report.voices else \
            f", about {p['mean_distinct_voices']:.1f} different voices"
        if report.sex and p["mean_women"] is not None:
            extra += f", women {p['mean_women']:.2f} / men {p['mean_men']:.2f}"
        items.append(f"<li><b>{_e(_period(p))}</b> <span>mean {p['mean_count']:.2f}, peak {p['peak_count']}, "
                     f"2 or more speaking {p['share_2plus']:.0%} of the time{_e(extra)}</span></li>")
    return f'<ol class="busiest">{"".join(items)}</ol>'


def _table(title: str, headers: list[str], rows: list[list[str]], heading: bool = True) -> str:
    head = f"<h2>{_e(title)}</h2>" if heading else ""
    if not rows:
        return head + "<p>(none)</p>"
    cells = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'{head}<div class="scroll"><table><thead><tr>{"".join(f"<th>{_e(h)}</th>" for h in headers)}'
            f"</tr></thead><tbody>{cells}</tbody></table></div>")


def _heat_table(report: Report, key: str, light: tuple[int, int, int], dark: tuple[int, int, int]) -> str:
    """Hours (those with any data) down, weekdays across; each cell's mean, coloured from `light` (0) to
    `dark` (the highest); grey: not monitored; hatched: low coverage."""
    cells, low = weekday_hour_cells(report, key)
    hours = [h for h in range(24) if not all(math.isnan(v) for v in cells[:, h])]
    top = max(1.0, max((v for v in cells.flat if not math.isnan(v)), default=1.0))
    rows = []
    for hour in hours:
        tds = []
        for weekday in range(7):
            value = cells[weekday, hour]
            if math.isnan(value):
                tds.append('<td class="none">·</td>')
                continue
            share = value / top
            rgb = [round(a + (b - a) * share) for a, b in zip(light, dark)]
            ink = "#fff" if share > 0.6 else "#000"
            cls = ' class="low"' if low[weekday, hour] else ""
            tds.append(f'<td{cls} style="background-color:rgb({rgb[0]},{rgb[1]},{rgb[2]});color:{ink}">{value:.1f}</td>')
        rows.append(f"<tr><th>{hour:02d}:00</th>{''.join(tds)}</tr>")
    return (f'<div class="scroll"><table class="heat"><thead><tr><th></th>{"".join(f"<th>{d}</th>" for d in WEEKDAYS)}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            f'<p class="note">{_e(report.zone)}; grey: not monitored; hatched: under {report.min_coverage:g} '
            "monitored minutes per hour.</p>")


def _daily_svg(report: Report) -> str:
    """The daily chart of `--plot`, alone, as inline SVG (its text drawn as paths: no font is fetched)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")  # narrow: its text stays legible at a phone's width
    daily_chart(fig.subplots(), report)
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]
