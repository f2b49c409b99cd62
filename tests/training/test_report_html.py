"""``recsys evaluate``'s ``report.html``: one self-contained page holding the JSON's figures."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pelanggan.cli import main
from recsys.config import TrainingConfig, get_settings
from recsys.io.synthetic import generate_events, write_events

CONFIG = TrainingConfig(factors=8, iterations=5, neighbours=10)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    root = tmp_path_factory.mktemp("report")
    events, catalog = generate_events(150, 40, 300, seed=5)
    write_events(events, root / "events.csv")
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:  # the command line, with a small model
        for name, value in CONFIG.model_dump().items():
            patch.setenv(f"RECSYS_TRAINING__{name.upper()}", str(value))
        get_settings.cache_clear()
        argv = ["evaluate", "--events", str(root / "events.csv"), "--split-date", "2025-09-01"]
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main([*argv, "--out", str(out)]) == 0
    get_settings.cache_clear()
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["factors"] == CONFIG.factors
    report["stdout"] = buffer.getvalue()
    return report, (out / "report.html").read_text(encoding="utf-8"), out


def test_the_summary_printed_says_at_which_k(written: Any) -> None:
    report, _, out = written
    printed = report["stdout"]
    assert printed.startswith("summary at k=50 (ndcg@50 and recall@50")
    assert json.dumps(report["summary"], indent=2) in printed
    assert str(out / "report.html") in printed


def test_the_page_is_one_file_with_its_images_embedded(written: Any) -> None:
    report, html, out = written
    assert report["html"] == "report.html"
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    assert "url(" not in html and "@import" not in html  # nor in the styles
    for link in links:  # every image decodes to a PNG
        assert base64.b64decode(link.split(",", 1)[1])[:4] == b"\x89PNG"
    alts = re.findall(r'<img alt="([^"]+)"', html)
    expected = {"churn ROC curve", "churn reliability diagram", "CLV backtest by decile"}
    expected |= {"segments", "journey stages"}
    if any("skipped" not in row for row in report["churn"]["backtest"]):
        expected.add("churn reliability per cutoff")
    expected |= {f"NDCG and recall against k, {task}" for task in report["intervals"]}
    expected |= {f"coverage and popularity bias, {task}" for task in report["tasks"]}
    assert set(alts) == expected


def test_the_page_shows_the_figures_of_the_json_report(written: Any) -> None:
    report, html, _ = written
    assert report["k_values"] == [5, 10, 20, 50] and report["summary_k"] == 50
    for task, block in report["intervals"].items():
        assert set(block["methods"]) == set(report["tasks"][task])
        for method, metrics in block["methods"].items():
            for k in report["k_values"]:
                for name in ("ndcg", "recall"):
                    m = metrics[f"{name}@{k}"]
                    assert m["lo"] <= m["value"] <= m["hi"]
                    assert m["value"] == pytest.approx(report["tasks"][task][method][f"{name}@{k}"])
                    assert f"{m['value']:.4f}" in html and f"{m['lo']:.4f}" in html
            coverage = report["tasks"][task][method]["coverage@50"]
            assert f"{coverage:.3f}" in html
            assert 0.0 <= report["tasks"][task][method]["popularity_pct@50"] <= 1.0
    for line in report["verdicts"]:
        assert line in html
    assert all("@50" in line for line in report["verdicts"] if not line.startswith("churn"))
    for name, m in report["churn"]["test"].items():
        assert f"{m['roc_auc']:.4f}" in html and name in report["churn"]["roc_curve"]
    backtest = [row for row in report["churn"]["backtest"] if "skipped" not in row]
    assert backtest and backtest[0]["cutoff"] == report["split_date"][:10]
    for row in backtest:  # the base rate and the mean risk of every cutoff
        assert f"<td>{row['cutoff']}</td><td>{row['churn_rate']:.3f}</td>" in html
        assert f"{row['mean_predicted']['model']:.3f}" in html
        assert sum(b["n"] for b in row["reliability"]) == row["test"]["model"]["n"]
    clv = report["customers"]["clv_backtest"]
    assert f"{clv['bgnbd_gamma_gamma']['pearson']:.4f}" in html and len(clv["deciles"]) == 10
    assert f"Served: {clv['choice']['served']}" in html
    counts = {row["segment"]: row["customers"] for row in report["customers"]["segments"]}
    assert sum(counts.values()) == report["customers"]["customers"]
    for segment, n in counts.items():
        assert f"<td>{segment}</td><td>{n}</td>" in html
    stages = report["customers"]["journey_stages"]
    assert sum(row["customers"] for row in stages) == report["customers"]["customers"]
