"""The files of ``recsys evaluate``: ``report.json``, ``report.html`` and the bar charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training import report_plots as plots
from training.report_html import ORDER, render

HEADLINE = ("ndcg", "recall")


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``report.json``, ``report.html`` (one self-contained page) and one bar chart per
    headline metric and k; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in report["k_values"]:
        for name in HEADLINE:
            path = out_dir / f"{name}_at_{k}.png"
            path.write_bytes(plots.png(plots.metric_bars(report["tasks"], name, k, ORDER), 110))
            files.append(path)
    report["plots"] = [p.name for p in files]
    report["html"] = "report.html"
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path = out_dir / "report.html"
    html_path.write_text(render(json.loads(json_path.read_text())), encoding="utf-8")
    return [json_path, html_path, *files]
