"""``report.html``: the evaluation report as one self-contained page (no external files).

The figures of ``training.report_plots`` are embedded as PNG ``data:`` URIs, the styles are
inline, and the page names nothing outside itself: it can be mailed, archived or opened
offline. Rendered with Jinja2 (autoescaped); the data is the dict that ``report.json`` holds.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import partial
from typing import Any

from jinja2 import Environment, select_autoescape
from matplotlib.figure import Figure

from training import report_plots as plots

ORDER = ("served",)  # first; then the methods in the report's order (training.evaluate.METHODS)

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Pelanggan evaluation, split {{ r.split_date }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } tr.served td { font-weight: 600; background: #f7fbff; }
.ci { color: #777; font-size: .75rem; } img { max-width: 100%; display: block; margin: .5rem 0; }
.note { color: #555; font-size: .9rem; } ul.verdicts { font-family: monospace; font-size: .8rem; }
.row { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
.row img { max-width: 48%; }
</style></head><body>
<h1>Offline evaluation: trained before {{ r.split_date }}, scored after it</h1>
<p class="note">Events: {{ r.events }} ({{ r.format }}). Customers scored: {{ c.customers_all }}
(all), {{ c.customers_discovery }} (discovery); {{ c.products }} products.
Headline figures and verdicts at k = {{ r.summary_k }}; intervals are 95% bootstrap intervals
over customers. Total time {{ r.timing.total_seconds }} s.</p>

<h2>Ranking quality: NDCG and recall at k = {{ r.k_values | join(", ") }}</h2>
{% for task, block in r.intervals.items() %}
<h3>Task "{{ task }}"</h3>
<img alt="NDCG and recall against k, {{ task }}" src="{{ img['by_k_' ~ task] }}">
<table><tr><th>method</th>{% for k in r.k_values %}<th>NDCG@{{ k }}</th>{% endfor %}
{% for k in r.k_values %}<th>recall@{{ k }}</th>{% endfor %}</tr>
{% for method in methods(block.methods) %}<tr class="{{ method }}"><td>{{ method }}</td>
{% for name in ("ndcg", "recall") %}{% for k in r.k_values %}
{% set m = block.methods[method].get(name ~ "@" ~ k) %}
<td>{% if m %}{{ "%.4f" | format(m.value) }}<br><span class="ci">[{{ "%.4f" | format(m.lo) }},
{{ "%.4f" | format(m.hi) }}]</span>{% endif %}</td>{% endfor %}{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
<p class="note">Served minus each method at k = {{ r.summary_k }} (paired bootstrap): "beats"
only where the interval excludes 0.</p>
<ul class="verdicts">{% for line in r.verdicts %}<li>{{ line }}</li>{% endfor %}</ul>

<h2>Coverage and popularity bias at k = {{ r.summary_k }}</h2>
<p class="note">Coverage: distinct products in anyone's top k, as a share of the products.
Popularity percentile: mean over the shown items (1 = best seller; the catalogue averages
0.5). Head share: slots taken by the best-selling 10% of products (the catalogue: 0.1).</p>
{% for task, by_method in r.tasks.items() %}
<img alt="coverage and popularity bias, {{ task }}" src="{{ img['exposure_' ~ task] }}">
<table><tr><th>{{ task }}</th>{% for k in r.k_values %}<th>coverage@{{ k }}</th>{% endfor %}
{% for k in r.k_values %}<th>popularity pct@{{ k }}</th>{% endfor %}
<th>head share@{{ r.summary_k }}</th></tr>
{% for method in methods(by_method) %}{% set m = by_method[method] %}
<tr class="{{ method }}"><td>{{ method }}</td>
{% for k in r.k_values %}<td>{{ "%.3f" | format(m["coverage@" ~ k]) }}</td>{% endfor %}
{% for k in r.k_values %}<td>{{ "%.3f" | format(m.get("popularity_pct@" ~ k, 0)) }}</td>{% endfor %}
<td>{{ "%.3f" | format(m.get("head_share@" ~ r.summary_k, 0)) }}</td></tr>{% endfor %}
</table>
{% endfor %}

<h2>Churn</h2>
{% if not r.churn %}<p class="note">Not evaluated.</p>
{% elif r.churn.skipped %}<p class="note">Skipped: {{ r.churn.skipped }}</p>
{% else %}
<p class="note">Label window {{ r.churn.label_window | join(" to ") }}{% if not
r.churn.label_window_complete %} (incomplete: the data ends before it){% endif %}; features as
of the split.</p>
<div class="row"><img alt="churn ROC curve" src="{{ img.roc }}">
<img alt="churn reliability diagram" src="{{ img.reliability }}"></div>
<table><tr><th>scorer</th><th>ROC-AUC</th><th>PR-AUC</th><th>Brier</th><th>lift@10%</th></tr>
{% for name, m in r.churn.test.items() %}{% set i = r.churn.intervals.scorers[name] %}
<tr><td>{{ name }}</td><td>{{ "%.4f" | format(m.roc_auc) }}<br><span class="ci">[{{
"%.4f" | format(i.roc_auc.lo) }}, {{ "%.4f" | format(i.roc_auc.hi) }}]</span></td>
<td>{{ "%.4f" | format(m.pr_auc) }}</td><td>{{ "%.4f" | format(m.brier) }}<br><span
class="ci">[{{ "%.4f" | format(i.brier.lo) }}, {{ "%.4f" | format(i.brier.hi) }}]</span></td>
<td>{{ "%.3f" | format(m.top_decile_lift) }}</td></tr>{% endfor %}</table>
{% set bt = r.churn.get("backtest", []) | rejectattr("skipped", "defined") | list %}
{% if bt %}<h3>By cutoff</h3>
<p class="note">The same recipe trained before each cutoff and scored on its customers: the
base rate moves between cutoffs; the model should follow it.</p>
<img alt="churn reliability per cutoff" src="{{ img.reliability_by_cutoff }}">
<table><tr><th>cutoff</th><th>churn rate</th><th>mean predicted (model / RFM)</th>
<th>ROC-AUC (model / RFM)</th><th>PR-AUC (model / RFM)</th><th>Brier (model / RFM)</th></tr>
{% for row in bt %}{% set m, b = row.test.model, row.test.rfm_logistic %}
<tr><td>{{ row.cutoff }}</td><td>{{ "%.3f" | format(row.churn_rate) }}</td>
<td>{{ "%.3f" | format(row.mean_predicted.model) }} / {{
"%.3f" | format(row.mean_predicted.rfm_logistic) }}</td>
<td>{{ "%.4f" | format(m.roc_auc) }} / {{ "%.4f" | format(b.roc_auc) }}</td>
<td>{{ "%.4f" | format(m.pr_auc) }} / {{ "%.4f" | format(b.pr_auc) }}</td>
<td>{{ "%.4f" | format(m.brier) }} / {{ "%.4f" | format(b.brier) }}</td></tr>
{% endfor %}</table>{% endif %}
{% endif %}

<h2>CLV backtest</h2>
{% set clv = r.get("customers", {}).get("clv_backtest") %}
{% if not clv %}<p class="note">Not evaluated.</p>
{% elif clv.skipped %}<p class="note">Skipped: {{ clv.skipped }}</p>
{% else %}
<p class="note">Predicted against actual net spend over the {{ clv.period_days }} days after the
split, {{ clv.customers }} customers who bought before it (mean actual
{{ "%.2f" | format(clv.mean_actual) }}).</p>
<img alt="CLV backtest by decile" src="{{ img.clv }}">
<table><tr><th>predictor</th><th>Pearson</th><th>Spearman</th><th>MAE</th>
<th>mean predicted</th></tr>
{% for name in ("bgnbd_gamma_gamma", "gradient_boosting", "naive_last_90d") if name in clv %}
{% set m = clv[name] %}
<tr><td>{{ name }}</td><td>{{ "%.4f" | format(m.pearson) }}</td>
<td>{{ "%.4f" | format(m.spearman) }}</td><td>{{ "%.2f" | format(m.mae) }}</td>
<td>{{ "%.2f" | format(m.mean_predicted) }}</td></tr>{% endfor %}</table>
{% if clv.choice %}<p class="note">Served: {{ clv.choice.served }} ({{ clv.choice.why }}).</p>
{% endif %}{% endif %}

<h2>Segments and journey stages</h2>
{% set cust = r.get("customers", {}) %}
{% if not cust.segments %}<p class="note">Not evaluated.</p>{% else %}
<p class="note">The {{ cust.customers }} customers known at the split, as a model trained there
would describe them.</p>
<div class="row"><img alt="segments" src="{{ img.segments }}">
<img alt="journey stages" src="{{ img.stages }}"></div>
<div class="row">
{% for key, col in (("segments", "segment"), ("journey_stages", "journey_stage")) %}
<table><tr><th>{{ col }}</th><th>customers</th><th>mean CLV</th><th>mean churn risk</th></tr>
{% for row in cust[key] %}<tr><td>{{ row[col] }}</td><td>{{ row.customers }}</td>
<td>{{ "%.2f" | format(row.mean_clv) if row.mean_clv is not none else "" }}</td>
<td>{{ "%.3f" | format(row.mean_churn_risk) if row.mean_churn_risk is not none else "" }}</td>
</tr>{% endfor %}</table>{% endfor %}</div>
{% endif %}
</body></html>
"""


def data_uri(fig: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(plots.png(fig)).decode("ascii")


def images(report: dict[str, Any]) -> dict[str, str]:
    """Every figure of the page as a ``data:`` URI, by name."""
    k = report.get("summary_k", max(report["k_values"]))
    draw: dict[str, Callable[[], Figure]] = {}
    for task in report.get("intervals", {}):
        draw[f"by_k_{task}"] = partial(
            plots.metric_by_k, report["intervals"], task, report["k_values"], ORDER
        )
    for task in report.get("tasks", {}):
        draw[f"exposure_{task}"] = partial(plots.exposure, report["tasks"], task, k, ORDER)
    churn = report.get("churn") or {}
    if churn.get("roc_curve"):
        draw["roc"] = lambda: plots.roc(churn)
        draw["reliability"] = lambda: plots.reliability(churn)
    if any("reliability" in row for row in churn.get("backtest", [])):
        draw["reliability_by_cutoff"] = lambda: plots.reliability_by_cutoff(churn["backtest"])
    customers = report.get("customers") or {}
    if customers.get("clv_backtest", {}).get("deciles"):
        draw["clv"] = lambda: plots.clv_deciles(customers["clv_backtest"])
    if customers.get("segments"):
        draw["segments"] = lambda: plots.distribution(customers["segments"], "segment", "segments")
        draw["stages"] = lambda: plots.distribution(
            customers["journey_stages"], "journey_stage", "journey stages"
        )
    return {name: data_uri(make()) for name, make in draw.items()}


def render(report: dict[str, Any]) -> str:
    """The page for ``report`` (the dict ``report.json`` holds)."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))

    def methods(by_method: dict[str, Any]) -> list[str]:
        return [m for m in ORDER if m in by_method] + [m for m in by_method if m not in ORDER]

    template = env.from_string(TEMPLATE)
    return template.render(
        r=report, c=report.get("counts", {}), img=images(report), methods=methods
    )
