"""index.html: the figures and the runs table on one page (no scripts, no external files)."""

from __future__ import annotations

import datetime
import html

import pandas as pd

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
) -> str:
    """The page; `figures` are (file name, caption, reason it was not drawn or None)."""
    counts = table["status"].value_counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    unfinished = table[table["status"] != "complete"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
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
    for name, caption, missing in figures:
        if missing:
            parts.append(
                f"<p><b>{html.escape(caption)}</b>: not drawn, {html.escape(missing)}.</p>"
            )
        else:
            parts.append(
                f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    rows = table.copy()
    parts.append("<h2>Runs</h2>")
    parts.append(rows.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.5g}", border=0))
    parts.append("</body></html>")
    return _mark_status("\n".join(parts))


def _mark_status(page: str) -> str:
    for status in ("failed", "running", "stopped", "pending"):
        page = page.replace(f"<td>{status}</td>", f"<td class='status-{status}'>{status}</td>")
    return page
