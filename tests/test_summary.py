"""The report's answer first: the edge-agreement table as HTML (rounded, the claim of each grid point
and whether it holds), the headline figure, and each table as a page with its CSV as a download."""
from __future__ import annotations

import base64
import re

import pandas as pd

from samedge.aggregate import aggregate
from samedge.cli import main
from samedge.figure_specs import headline_files, summary_dir
from tests.synthetic import DIVERGED, EMPTY, GRID, write_grid


def test_summary_pages_lead_with_the_claims_and_embed_the_csvs(tmp_path):
    write_grid(tmp_path / "runs")
    aggregate(tmp_path / "runs", tmp_path)
    assert main(["figure", "summary", "--results", str(tmp_path), "--out", str(tmp_path / "figures")]) == 0
    folder = summary_dir(tmp_path / "figures")
    assert all(path.stat().st_size > 0 for path in headline_files(tmp_path / "figures"))
    landing = (folder / "landing.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", landing, flags=re.S)[1:]
    assert len(rows) == sum(len(lrs) * len(rhos) for lrs, rhos in GRID.values())   # one per grid point
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    by_point = {(c[0], c[1], c[2]): c for c in cells}
    assert by_point["mnist", "0.3", "0"][3] == "λ₁ at 2/η (GD edge)" and by_point["mnist", "0.3", "0.1"][3] == "λ₁ at the SAM edge"
    assert by_point[DIVERGED[0], "1", "0.1"][-1].startswith("diverged")
    assert by_point[EMPTY[0], "0.1", "0"][-1] == "no measurements"
    assert {c[-1] for c in cells} - {"no measurements"} <= {"yes", "no"} | {c[-1] for c in cells if "diverged" in c[-1]}
    assert all(re.fullmatch(r"\d+\.\d{3}|", c[4]) for c in cells)                   # rounded to 3 decimals
    assert "data:image/png;base64," in landing                                       # the headline figure, embedded
    for name in ("edge_agreement", "runs"):
        page = (folder / f"{name}.html").read_text()
        csv = base64.b64decode(re.search(r'download="%s.csv" href="data:text/csv;base64,([^"]+)"' % name, page)[1])
        assert csv == (tmp_path / f"{name}.csv").read_bytes()                        # the CSV, whole, beside the table
        assert "<table" in page and "nan" not in page


def test_summary_pages_are_byte_stable(tmp_path):
    write_grid(tmp_path / "runs", tasks=("mnist",))
    aggregate(tmp_path / "runs", tmp_path)
    pages = []
    for out in ("a", "b"):
        assert main(["figure", "summary", "--results", str(tmp_path), "--out", str(tmp_path / out)]) == 0
        pages.append([p.read_bytes() for p in sorted(summary_dir(tmp_path / out).iterdir())])
    assert pages[0] == pages[1]
