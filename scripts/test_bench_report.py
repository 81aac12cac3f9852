#!/usr/bin/env python3
"""Tests of scripts/bench_report.py: statistics, formats, expressions and the report's rows
(scripts/check.sh runs them: python3 -m unittest discover -s scripts -p 'test_*.py')."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report as br  # noqa: E402


class Statistics(unittest.TestCase):
    def test_best_and_median(self):
        self.assertEqual(br.best([3.0, 1.5, 2.0]), 1.5)
        self.assertEqual(br.median([3.0, 1.5, 2.0]), 2.0)
        # Even counts: the mean of the middle two, to 4 decimals.
        self.assertEqual(br.median([1.0, 4.0, 2.0, 3.0]), 2.5)
        self.assertEqual(br.median([0.12345, 0.12346]), 0.1235)
        self.assertEqual(br.median([7]), 7)
        with self.assertRaises(ValueError):
            br.median([])

    def test_formats(self):
        self.assertEqual(br.fmt_time(0.0421), "0.042 s")
        self.assertEqual(br.fmt_time(1.234), "1.23 s")
        self.assertEqual(br.fmt_time(12.34), "12.3 s")
        self.assertEqual(br.fmt_size(2048), "2.0 KiB")
        self.assertEqual(br.fmt_size(5 * 1048576), "5.0 MiB")
        self.assertEqual(br.fmt_size(3 * 1073741824), "3.00 GiB")
        # Rates: two significant digits below 10, none above.
        self.assertEqual(br.fmt_rate(1000, 2.0), "500")
        self.assertEqual(br.fmt_rate(7, 2.0), "3.5")
        self.assertEqual(br.fmt_rate(7, 0), "0")
        self.assertEqual(br.fmt_mbps(1e9, 4.0), "250")
        self.assertEqual(br.fmt_ratio(1, 2), "0.50")
        self.assertEqual(br.fmt_ratio(1, 40), "0.025")
        self.assertEqual(br.fmt_ratio(1, 0), "?")
        self.assertEqual(br.fmt_pct(1, 4), "25.00 %")
        self.assertEqual(br.fmt_pct(1, 10000), "0.0100 %")
        self.assertEqual(br.fmt_pct(1, 0), "?")

    def test_expressions(self):
        s = {"t": [3.0, 1.0, 2.0], "h": [10 << 20, 30 << 20], "b": [4 << 20]}.__getitem__
        self.assertEqual(br.evaluate("t min time", s), "1.00 s")
        self.assertEqual(br.evaluate("t med", s), 2.0)
        self.assertEqual(br.evaluate("h med b med - size", s), "16.0 MiB")
        self.assertEqual(br.evaluate("100 t med rate", s), "50")
        # A ratio of rates is the ratio of the rates as printed: "3.3" / "50", not 3.333 / 50.
        self.assertEqual(br.evaluate("10 3 rate 100 t med rate ratio", s), "0.066")
        self.assertEqual(br.evaluate("1.2345 r3 f2", s), "1.23")
        def only_t(name):
            if name != "t":
                raise br.ReportError(f"no series {name}")
            return [1.0]
        for bad in ("t med med", "t", "1 +", "x min"):
            with self.assertRaises(br.ReportError, msg=bad):
                br.evaluate(bad, only_t)


def rows(*objs):
    return [dict(o) for o in objs]


class Table(unittest.TestCase):
    def test_kinds_ratios_and_groups(self):
        objs = rows(
            {"type": "row", "id": "gz", "label": "gzip -dc", "kind": "time", "ref": "gz", "ref_name": "gzip -dc",
             "values": [2.0, 4.0, 3.0], "cells": {"notes": ["1 GiB, ", {"x": "1000000000 values med mbps"}, " MB/s out"]}},
            {"type": "row", "id": "rand-local", "group": "rand", "label": "random: local", "kind": "rate", "count": 100,
             "ref": "rand-local", "ref_name": "local fs", "values": [0.5, 1.0]},
            {"type": "row", "label": "imgfs cold index", "kind": "time", "ref": "gz", "ref_name": "gzip -dc",
             "values": [1.5], "series": {"hwm": [3 << 20, 1 << 20]},
             "cells": {"notes": ["peak RSS ", {"x": "hwm med size"}]}},
            {"type": "row", "group": "rand", "label": "random: imgfs", "kind": "rate", "count": 100,
             "ref": "rand-local", "ref_name": "local fs", "values": [2.0], "cells": {"median": []}},
            {"type": "row", "label": "RSS", "kind": "text", "series": {"hwm": [1 << 20]},
             "cells": {"best": [{"x": "hwm min size"}], "notes": ["text"]}},
            {"type": "place", "group": "rand"},
            {"type": "row", "group": "rand", "label": "never placed", "kind": "text", "cells": {"best": ["x"]}},
        )
        self.assertEqual(br.table_lines(objs, br.BENCH_COLUMNS), [
            "| gzip -dc | 2.00 s | 3.00 s | 1.00× gzip -dc | 1 GiB, 333 MB/s out |",
            "| imgfs cold index | 1.50 s | 1.50 s | 0.50× gzip -dc | peak RSS 2.0 MiB |",
            "| RSS | 1.0 MiB |  |  | text |",
            "| random: local | 200 files/s | 133 files/s | 1.00× local fs |  |",
            "| random: imgfs | 50 files/s |  | 0.38× local fs |  |",
        ])

    def test_a_bad_row_is_shown_failed_not_fatal(self):
        objs = rows({"type": "row", "label": "x", "kind": "time", "ref": "missing", "ref_name": "y", "values": [1.0]})
        line = br.table_lines(objs, br.BENCH_COLUMNS)[0]
        self.assertTrue(line.startswith("| x | FAILED |  |  | report: "), line)


class Report(unittest.TestCase):
    def test_bench_report_from_jsonl(self):
        objs = [
            {"type": "row", "id": "gz", "label": "gzip -dc layer (cold)", "kind": "time", "ref": "gz",
             "ref_name": "gzip -dc", "values": [1.0, 1.2, 1.1]},
            {"type": "note", "text": "cannot drop the page cache"},
            {"type": "meta", "style": "bench", "date": "2026-12-04 03:00 UTC", "title": "", "rev": "abc1234",
             "command": "scripts/bench --runs 3", "took_seconds": 90, "build_seconds": 0,
             "machine": "2 cores (cpu)", "remark": "", "lines": ["layer: x"], "runs": "3", "tree_by": ""},
        ]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rows.jsonl")
            with open(path, "w") as f:
                f.write("".join(json.dumps(o) + "\n" for o in objs))
            out = subprocess.run([sys.executable, br.__file__, "report", path], check=True,
                                 capture_output=True, text=True).stdout
        self.assertEqual(out, "\n".join([
            "## 2026-12-04 03:00 UTC — imgfs abc1234",
            "",
            "- command: `scripts/bench --runs 3` (took 1.5 min)",
            "- machine: 2 cores (cpu)",
            "- layer: x",
            "- best and median of 3 runs; 'cold' = page cache dropped (sync; echo 3 > drop_caches) before the timed part;"
            " each imgfs run mounts a fresh directory; ratios are of medians",
            "",
            "| measurement | best | median | ratio | notes |",
            "|---|---|---|---|---|",
            "| gzip -dc layer (cold) | 1.00 s | 1.10 s | 1.00× gzip -dc |  |",
            "",
            "- note: cannot drop the page cache",
            "- problems: none seen (bytes and tree checked against tar -x)",
            "",
        ]) + "\n")

    def test_plain_report(self):
        objs = [
            {"type": "row", "id": "p", "label": "peer", "kind": "text", "series": {"t": [2.0, 2.5]},
             "cells": {"best": [{"x": "t min s3"}], "median": [{"x": "t med s3"}],
                       "ratio": [{"x": "t med r3 p:t med r3 / f2"}, "×"]}},
            {"type": "meta", "style": "plain", "preamble": ["", "Image: x", ""],
             "columns": ["measurement", "best", "median", "median / peer"]},
        ]
        self.assertEqual(br.report(objs), "\n".join([
            "", "Image: x", "",
            "| measurement | best | median | median / peer |",
            "|---|---|---|---|",
            "| peer | 2.000 s | 2.250 s | 1.00× |",
        ]) + "\n")

    def test_fmt_command(self):
        out = subprocess.run([sys.executable, br.__file__, "fmt", "size", "1536"], check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual(out, "1.5 KiB\n")


if __name__ == "__main__":
    unittest.main()
