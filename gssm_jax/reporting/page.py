"""index.html: the figures and the runs table on one page: plotly charts where given (plotly.js
beside the page, nothing from the network), else the PNGs; a table that sorts and filters."""

from __future__ import annotations

import datetime
import html

import pandas as pd

from gssm_jax.reporting import sortable

STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figcaption { font-size: small; color: #444; max-width: 640px; }
table { border-collapse: collapse; font-size: small; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
.status-failed { background: #fdd; } .status-running { background: #ffd; }
.status-stopped { background: #eef; } .status-pending { background: #eee; }
"""


def render(
    title: str,
    sources: list[str],
    table: pd.DataFrame,
    figures: list[tuple[str, str, str | None]],
    charts: dict[str, str] | None = None,
    plotly_js: str | None = None,
) -> str:
    """The page; `figures` are (file name, caption, reason it was not drawn or None), `charts`
    maps a figure's file name to its plotly <div>, drawn by the script file `plotly_js`."""
    charts = (charts or {}) if plotly_js else {}
    counts = table["status"].value_counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    unfinished = table[table["status"] != "complete"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}{sortable.STYLE}</style>",
        f"<script src='{html.escape(plotly_js or '')}'></script>" if charts else "",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(table)} runs ({html.escape(summary)}) from {html.escape(', '.join(sources))}; "
        f"written {datetime.datetime.now().isoformat(timespec='seconds')}. "
        "Table: <a href='runs.csv'>runs.csv</a>.</p>",
    ]
    if len(unfinished):
        items = "".join(
            f"<li>{html.escape(str(r.run))}: {html.escape(str(r.status))}"
            + (f" (exit {int(r.exit_code)})" if pd.notna(r.exit_code) else "")
            + f", step {r.step} of {r.steps}</li>"
            for r in unfinished.itertuples()
        )
        parts.append(f"<h2>Not complete</h2><ul>{items}</ul>")
    parts.append("<h2>Figures</h2>")
    notes = []  # after the figures, so the drawn ones sit side by side
    for name, caption, missing in figures:
        if missing:
            notes.append(
                f"<p><b>{html.escape(caption)}</b>: not drawn, {html.escape(missing)}.</p>"
            )
        elif name in charts:
            parts.append(
                f"<figure class='chart'>{charts[name]}<figcaption>{html.escape(caption)} "
                f"(PNG: <a href='{html.escape(name)}'>{html.escape(name)}</a>)</figcaption></figure>"
            )
        else:
            parts.append(
                f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.extend(notes)
    rows = table.copy()
    parts.append("<h2>Runs</h2>")
    parts.append(sortable.table_html(rows))
    parts.append(f"<script>{sortable.SCRIPT}</script></body></html>")
    return _mark_status("\n".join(parts))


def _mark_status(page: str) -> str:
    for status in ("failed", "running", "stopped", "pending"):
        page = page.replace(f"<td>{status}</td>", f"<td class='status-{status}'>{status}</td>")
    return page
