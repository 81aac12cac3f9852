#!/usr/bin/env python3
"""Statistics and the markdown report of the benchmark scripts (scripts/bench, bench-layers,
bench-registry).

The scripts do the privileged work in bash (page cache, mounts, peers) and record what they
measured as JSON lines, one object per line; this program turns them into the report:

    scripts/bench_report.py report ROWS.jsonl     the markdown report (stdout)
    scripts/bench_report.py fmt KIND NUMBER...    one number formatted as the report does
                                                  (time, size, mbps, rate, ratio, pct), for the
                                                  labels and messages the scripts write

Objects of ROWS.jsonl, told apart by "type":

    {"type": "row", "id": ID, "group": "main"|"rand"|"seq", "label": TEXT, "kind": KIND,
     "values": [raw numbers], "series": {NAME: [raw numbers]}, "ref": ROW_ID, "ref_name": TEXT,
     "count": N, "bytes": N, "cells": {"best"|"median"|"ratio"|"notes": CELL}}
        one measurement. KIND says what "values" are and fills the cells the row leaves out:
          time   seconds: best and median time, ratio of medians to row "ref" ("0.52× gzip -dc")
          rate   seconds to read "count" files: files/s, ratio of median rates to row "ref"
          mbps   seconds to read "bytes" bytes: MB/s, ratio of median rates to row "ref"
          text   nothing: every cell given
        A CELL is a list of parts: a string is text, {"x": "EXPR"} a computed value (below).
    {"type": "place", "group": "rand"|"seq"}   where the rows of that group go in the table
    {"type": "note"|"problem", "text": TEXT}   the report's notes and problems
    {"type": "meta", ...}                      the report's header (see `report`)

EXPR is a postfix expression over numbers, the row's series ("values", a series name, or
"ROW_ID:NAME" for another row's; a series cannot be named like an operator) and these operators:
    min med                a series -> its best (smallest) value / its median
    + - * /                two numbers -> one
    time size mbps rate    formatted: seconds; bytes; (bytes seconds) -> MB/s; (n seconds) -> n/s
    ratio pct              (a b) -> a / b as "0.52" / "1.23 %" ("?" when b is 0)
    f0 f1 f2 s3 r3         "%.0f", "%.1f", "%.2f", "%.3f s"; r3 rounds to 3 decimals (a number)
    mib1                   bytes -> "%.1f MiB"
Formatted values are strings; arithmetic and ratio accept them back as numbers, so a ratio of two
rates is the ratio of the rates as printed, as the report always showed it.

Only the standard library: it runs wherever the scripts run. scripts/test_bench_report.py tests it
(scripts/check.sh runs that).
"""
import json
import sys


# ---------------------------------------------------------------------------------------------
# Statistics.

def best(values):
    """The smallest value (times: the best run)."""
    return min(values)


def median(values):
    """The middle value; of an even count, the mean of the two middle ones rounded to 4
    decimals (the precision of the recorded times)."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        raise ValueError("median of no values")
    if n % 2:
        return s[n // 2]
    return round((s[n // 2 - 1] + s[n // 2]) / 2, 4)


# ---------------------------------------------------------------------------------------------
# Formatting, as in every report since the first.

def fmt_time(t):
    t = float(t)
    if t < 0.1:
        return "%.3f s" % t
    if t < 10:
        return "%.2f s" % t
    return "%.1f s" % t


def fmt_size(b):
    b = float(b)
    if b < 1048576:
        return "%.1f KiB" % (b / 1024)
    if b < 1073741824:
        return "%.1f MiB" % (b / 1048576)
    return "%.2f GiB" % (b / 1073741824)


def _rate_text(r):
    # Two significant digits below 10 (slow peers), none above.
    return "%.2g" % r if r < 10 else "%.0f" % r


def fmt_mbps(nbytes, t):
    t = float(t)
    return _rate_text(float(nbytes) / t / 1e6 if t > 0 else 0)


def fmt_rate(n, t):
    t = float(t)
    return _rate_text(float(n) / t if t > 0 else 0)


def fmt_ratio(a, b):
    b = float(b)
    if b <= 0:
        return "?"
    r = float(a) / b
    return "%.2g" % r if r < 0.1 else "%.2f" % r


def fmt_pct(a, b):
    b = float(b)
    if b <= 0:
        return "?"
    a = float(a)
    return ("%.4f %%" if a / b < 0.001 else "%.2f %%") % (100 * a / b)


FORMATS = {
    "time": (1, fmt_time),
    "size": (1, fmt_size),
    "mbps": (2, fmt_mbps),
    "rate": (2, fmt_rate),
    "ratio": (2, fmt_ratio),
    "pct": (2, fmt_pct),
    "f0": (1, lambda x: "%.0f" % float(x)),
    "f1": (1, lambda x: "%.1f" % float(x)),
    "f2": (1, lambda x: "%.2f" % float(x)),
    "s3": (1, lambda x: "%.3f s" % float(x)),
    "mib1": (1, lambda x: "%.1f MiB" % (float(x) / 1048576)),
}
ARITH = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


# ---------------------------------------------------------------------------------------------
# Expressions and rows.

class ReportError(Exception):
    """A row the report cannot show: a bad expression or a missing series."""


def evaluate(expr, series_of):
    """The value of postfix EXPR; `series_of(name)` returns a series (a list of numbers)."""
    stack = []

    def pop(n):
        if len(stack) < n:
            raise ReportError(f"{expr!r}: not enough operands")
        args = stack[-n:]
        del stack[-n:]
        return args

    for tok in expr.split():
        if tok in ("min", "med"):
            (s,) = pop(1)
            if not isinstance(s, list) or not s:
                raise ReportError(f"{expr!r}: {tok} of something that is not a series")
            stack.append(best(s) if tok == "min" else median(s))
        elif tok in ARITH:
            a, b = pop(2)
            stack.append(ARITH[tok](float(a), float(b)))
        elif tok == "r3":
            (a,) = pop(1)
            stack.append(round(float(a), 3))
        elif tok in FORMATS:
            n, f = FORMATS[tok]
            stack.append(f(*pop(n)))
        else:
            try:
                stack.append(float(tok))
            except ValueError:
                stack.append(series_of(tok))
    if len(stack) != 1 or isinstance(stack[0], list):
        raise ReportError(f"{expr!r}: does not give one value")
    return stack[0]


def kind_cells(row, by_id):
    """The cells a row's kind computes (the row's own cells win); `by_id`: every row by id."""
    kind = row.get("kind", "text")
    ref = row.get("ref")
    name = row.get("ref_name", "")
    if kind == "time":
        cells = {"best": [{"x": "values min time"}], "median": [{"x": "values med time"}]}
        if ref:
            cells["ratio"] = [{"x": f"values med {ref}:values med ratio"}, f"× {name}"]
        return cells
    if kind in ("rate", "mbps"):
        # The rate of the best (shortest) run, and of the median one.
        n, unit = (row["count"], "files/s") if kind == "rate" else (row["bytes"], "MB/s")
        cells = {
            "best": [{"x": f"{n} values min {kind}"}, f" {unit}"],
            "median": [{"x": f"{n} values med {kind}"}, f" {unit}"],
        }
        if ref:
            other = by_id.get(ref, {})
            m = other.get("count" if kind == "rate" else "bytes", 0)
            cells["ratio"] = [{"x": f"{n} values med {kind} {m} {ref}:values med {kind} ratio"}, f"× {name}"]
        return cells
    if kind == "text":
        return {}
    raise ReportError(f"row {row.get('label')!r}: unknown kind {kind!r}")


def series_lookup(row, by_id):
    """The series a row's expressions name: its own, or "ROW_ID:NAME" of another row."""
    def series_of(name):
        if ":" in name:
            rid, _, sname = name.partition(":")
            other = by_id.get(rid)
            if other is None:
                raise ReportError(f"no row {rid!r}")
            return series_of_row(other, sname)
        return series_of_row(row, name)
    return series_of


def series_of_row(row, name):
    if name == "values":
        return row.get("values", [])
    s = row.get("series") or {}
    if name not in s:
        raise ReportError(f"row {row.get('label')!r} has no series {name!r}")
    return s[name]


def render_cell(parts, series_of):
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            v = evaluate(p["x"], series_of)
            out.append(v if isinstance(v, str) else ("%g" % v))
    return "".join(out)


def row_cells(row, columns, by_id):
    """The row's table cells: label, then one per column after it."""
    cells = kind_cells(row, by_id)
    cells.update(row.get("cells", {}))
    series_of = series_lookup(row, by_id)
    return [row["label"]] + [render_cell(cells.get(c, []), series_of) for c in columns]


def table_lines(objs, columns):
    """The table rows in report order: "main" rows as recorded, each group's rows at its place."""
    by_id = {}
    for r in objs:
        if r.get("type") == "row":
            by_id.setdefault(r.get("id", r["label"]), r)
    lines = []
    pending = {}  # group -> its rows since its last place
    for o in objs:
        if o.get("type") != "row" and o.get("type") != "place":
            continue
        if o.get("type") == "row" and o.get("group", "main") != "main":
            pending.setdefault(o["group"], []).append(o)
            continue
        group = [o] if o.get("type") == "row" else pending.pop(o["group"], [])
        for r in group:
            try:
                cells = row_cells(r, columns, by_id)
            except (ReportError, KeyError, ValueError, ZeroDivisionError) as e:
                cells = [r.get("label", "?"), "FAILED", "", "", f"report: {e}"][: len(columns) + 1]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# The report.

BENCH_COLUMNS = ["best", "median", "ratio", "notes"]


def report(objs):
    """The markdown report. Meta keys: style "bench" (scripts/bench's header, notes, problems)
    or "plain" ("preamble" lines, then the table with "columns" headers)."""
    metas = [o for o in objs if o.get("type") == "meta"]
    meta = metas[-1] if metas else {}
    out = []
    if meta.get("style", "bench") == "plain":
        headers = meta["columns"]
        out += meta.get("preamble", [])
        out.append("| " + " | ".join(headers) + " |")
        out.append("|" + "---|" * len(headers))
        out += table_lines(objs, BENCH_COLUMNS[: len(headers) - 1])
        return "\n".join(out) + "\n"
    took = "%.1f min" % (float(meta.get("took_seconds", 0)) / 60)
    if meta.get("build_seconds"):
        took += ", of which cargo build " + fmt_time(meta["build_seconds"])
    out.append(f"## {meta.get('date', '?')} — {meta.get('title') or 'imgfs'} {meta.get('rev', '?')}")
    out.append("")
    out.append(f"- command: `{meta.get('command', '?')}` (took {took})")
    out.append(f"- machine: {meta.get('machine', '?')}")
    if meta.get("remark"):
        out.append(f"- remark: {meta['remark']}")
    out += [f"- {line}" for line in meta.get("lines", [])]
    out.append(f"- best and median of {meta.get('runs', '?')} runs; 'cold' = page cache dropped (sync; echo 3 > drop_caches) before the timed part;"
               " each imgfs run mounts a fresh directory; ratios are of medians")
    out.append("")
    out.append("| measurement | best | median | ratio | notes |")
    out.append("|---|---|---|---|---|")
    out += table_lines(objs, BENCH_COLUMNS)
    out.append("")
    out += [f"- note: {o['text']}" for o in objs if o.get("type") == "note"]
    problems = [f"- problem: {o['text']}" for o in objs if o.get("type") == "problem"]
    out += problems or [f"- problems: none seen (bytes and tree checked against {meta.get('tree_by') or 'tar -x'})"]
    out.append("")
    return "\n".join(out) + "\n"


def read_jsonl(path):
    objs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    objs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"bench_report: {path}:{n}: {e}")
    return objs


def main(argv):
    if len(argv) == 2 and argv[0] == "report":
        sys.stdout.write(report(read_jsonl(argv[1])))
        return 0
    if len(argv) >= 3 and argv[0] == "fmt" and argv[1] in FORMATS:
        n, f = FORMATS[argv[1]]
        if len(argv) - 2 != n:
            raise SystemExit(f"bench_report: fmt {argv[1]} takes {n} numbers")
        print(f(*argv[2:]))
        return 0
    sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
