"""The runs table of index.html, sortable and filterable by column in the browser.

Click a column's header to sort by it (again: the other way); type in the box under it to keep
the rows that match: text is matched as a case-insensitive substring, `<0.1`, `>=1e6`, `=3` or
`!=complete` compare (numbers as numbers). Numeric cells carry their full value in `data-v`, so
sorting does not depend on the rounding shown. No external script.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

STYLE = """
table.runs th { cursor: pointer; user-select: none; background: #f4f4f4; position: sticky; top: 0; }
table.runs th.sorted-asc::after { content: " \\25B2"; } table.runs th.sorted-desc::after { content: " \\25BC"; }
table.runs tr.filters th { cursor: default; background: #fafafa; top: 1.6em; }
table.runs tr.filters input { width: 6em; font-size: x-small; }
#runs-count { font-size: small; color: #444; }
"""

SCRIPT = r"""
(function () {
  const table = document.getElementById("runs");
  if (!table) return;
  const head = table.tHead.rows[0], filters = table.tHead.rows[1];
  const body = table.tBodies[0], rows = Array.from(body.rows);
  const count = document.getElementById("runs-count");
  const cell = (row, i) => row.cells[i];
  const value = (c) => (c.dataset.v !== undefined ? parseFloat(c.dataset.v) : c.textContent.trim());
  const compare = (a, b) => {
    const an = typeof a === "number" && !isNaN(a), bn = typeof b === "number" && !isNaN(b);
    if (a === "" || (typeof a === "number" && isNaN(a))) return (b === "" ? 0 : 1);
    if (b === "" || (typeof b === "number" && isNaN(b))) return -1;
    if (an && bn) return a - b;
    return String(a).localeCompare(String(b), undefined, {numeric: true});
  };
  let sortCol = -1, sortDir = 1;
  Array.from(head.cells).forEach((th, i) => th.addEventListener("click", () => {
    sortDir = sortCol === i ? -sortDir : 1;
    sortCol = i;
    Array.from(head.cells).forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
    th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc");
    rows.sort((r, s) => {
      const a = value(cell(r, i)), b = value(cell(s, i));
      const c = compare(a, b);  // empty cells last either way
      return (a === "" || b === "") ? c : sortDir * c;
    });
    rows.forEach((r) => body.appendChild(r));
  }));
  const test = (text, c) => {
    const m = text.match(/^(<=|>=|!=|<|>|=)\s*(.*)$/);
    const shown = c.textContent.trim();
    if (!m) return shown.toLowerCase().includes(text.toLowerCase());
    const [, op, rhs] = m;
    const n = parseFloat(rhs), v = value(c);
    const numeric = rhs !== "" && !isNaN(n) && typeof v === "number" && !isNaN(v);
    const a = numeric ? v : shown, b = numeric ? n : rhs;
    switch (op) {
      case "<": return a < b; case ">": return a > b;
      case "<=": return a <= b; case ">=": return a >= b;
      case "=": return numeric ? a === b : a === b || shown.toLowerCase() === rhs.toLowerCase();
      default: return numeric ? a !== b : shown.toLowerCase() !== rhs.toLowerCase();
    }
  };
  const inputs = Array.from(filters.querySelectorAll("input"));
  const apply = () => {
    let n = 0;
    rows.forEach((r) => {
      const ok = inputs.every((inp) => {
        const t = inp.value.trim();
        return t === "" || test(t, cell(r, parseInt(inp.dataset.col, 10)));
      });
      r.style.display = ok ? "" : "none";
      n += ok ? 1 : 0;
    });
    count.textContent = `${n} of ${rows.length} runs shown`;
  };
  inputs.forEach((inp) => inp.addEventListener("input", apply));
  apply();
})();
"""


def _cell(value: Any) -> str:
    """`<td>`: empty for a missing value; a number shown to 5 digits with its full value in
    `data-v` (what sorting and `<`/`>` filters compare)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, numbers.Integral):
        return f"<td data-v='{int(value)}'>{int(value)}</td>"
    v = float(value)
    full = repr(v) if math.isfinite(v) else ("Infinity" if v > 0 else "-Infinity")
    return f"<td data-v='{full}'>{html.escape(f'{v:.5g}')}</td>"


def table_html(table: pd.DataFrame) -> str:
    """The table with a header row to sort by, a filter box per column and a count of rows."""
    columns = [str(c) for c in table.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    boxes = "".join(
        f"<th><input data-col='{i}' placeholder='filter' aria-label='filter {html.escape(c)}'></th>"
        for i, c in enumerate(columns)
    )
    rows = [
        "<tr>" + "".join(_cell(v) for v in row) + "</tr>"
        for row in table.astype(object).itertuples(index=False, name=None)
    ]
    return (
        "<p id='runs-count'></p><table id='runs' class='runs'>"
        f"<thead><tr>{head}</tr><tr class='filters'>{boxes}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
