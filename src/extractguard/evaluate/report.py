"""``report.json`` and a self-contained ``report.html`` (plot embedded as a PNG data URI).

The HTML has no external resources so it opens from a mail attachment or an air-gapped CI
artifact store exactly as it looked when written.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from extractguard.evaluate.assessment import Assessment

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem}
.meta{color:#5b6475;font-size:.9rem} table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e3e6ec;padding:.35rem .6rem;text-align:right} th:first-child,td:first-child{text-align:left}
th{background:#f5f7fa} img{max-width:100%;border:1px solid #e3e6ec} code{background:#f5f7fa;padding:0 .2rem}
.kv td{text-align:left}
"""


def plot_curves(assessment: Assessment) -> bytes:
    """Fidelity and accuracy vs real queries, one line per attack, as PNG bytes."""
    fig = Figure(figsize=(10, 4.2), dpi=110)
    ax_f, ax_a = fig.subplots(1, 2)
    for run in assessment.runs:
        q = [p.queries for p in run.points]
        ax_f.plot(q, [p.fidelity for p in run.points], marker="o", label=run.attack)
        if all(p.accuracy is not None for p in run.points):
            ax_a.plot(q, [p.accuracy for p in run.points], marker="o", label=run.attack)
    if assessment.victim_probe_accuracy is not None:
        ax_a.axhline(assessment.victim_probe_accuracy, color="black", linestyle="--", linewidth=1, label="victim")
    for ax, title in ((ax_f, "Fidelity to the victim (held-out probe set)"), (ax_a, "Accuracy of the stolen copy")):
        ax.set_xscale("log")
        ax.set_xlabel("queries")
        ax.set_ylim(0, 1.02)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_variants(assessment: Assessment) -> bytes:
    """Security vs utility per variant: stolen fidelity vs queries, and vs honest-user accuracy."""
    fig = Figure(figsize=(10, 4.2), dpi=110)
    ax_c, ax_t = fig.subplots(1, 2)
    top = str(assessment.budgets[-1])
    for v in assessment.variants:
        budgets = sorted(int(b) for b in v["best_fidelity"])
        ax_c.plot(budgets, [v["best_fidelity"][str(b)] for b in budgets], marker="o", label=v["name"])
        acc = v["honest_user"].get("accuracy")
        if acc is None:
            acc = v["honest_user"].get("agreement_with_reference", 1.0)
        fid = v["best_fidelity"].get(top)
        if fid is not None:
            ax_t.scatter([acc], [fid], s=40)
            ax_t.annotate(v["name"], (acc, fid), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax_c.set_xscale("log")
    ax_c.set_xlabel("queries")
    ax_c.set_ylabel("fidelity of the stolen copy")
    ax_c.set_ylim(0, 1.02)
    ax_c.set_title("Best attack's fidelity per variant (to the real model)", fontsize=10)
    ax_c.legend(fontsize=8, loc="best")
    ax_t.set_xlabel("honest-user accuracy (probe set)")
    ax_t.set_ylabel(f"stolen fidelity at {top} queries")
    ax_t.set_title("Security / utility trade-off (lower right is better)", fontsize=10)
    for ax in (ax_c, ax_t):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _variants_html(a: Assessment) -> str:
    if not a.variants:
        return ""
    img = base64.b64encode(plot_variants(a)).decode("ascii")
    head = "".join(f"<th>fidelity @ {b}</th>" for b in a.budgets)
    rows = []
    for v in a.variants:
        hu = v["honest_user"]
        cells = "".join(f"<td>{_fmt(v['best_fidelity'].get(str(b)))}</td>" for b in a.budgets)
        name = html.escape(v["name"]) + (" (reference)" if v["reference"] else "")
        rows.append(
            f"<tr><td>{name}</td><td>{html.escape(v['output'])}</td><td>{_fmt(hu.get('accuracy'))}</td>"
            f"<td>{_fmt(hu.get('agreement_with_reference', 1.0 if v['reference'] else None))}</td>"
            f"<td>{_fmt(hu.get('mean_l1_to_reference', 0.0 if v['reference'] else None))}</td>{cells}"
            f"<td>{html.escape(v.get('description') or '')}</td></tr>"
        )
    return f"""<h2>Defenses: what each variant gives away, and what it costs honest users</h2>
<p>The same attacks ran through each variant (one API key per gateway tier). Fidelity is the best attack's
agreement with the <em>reference</em> variant's answers, i.e. the real model, on the held-out probe rows; honest-user
accuracy is the variant's own answers on those rows against the true labels.</p>
<img id="variants-plot" alt="Stolen fidelity and honest-user accuracy per variant" src="data:image/png;base64,{img}">
<table id="variants"><thead><tr><th>variant</th><th>output</th><th>honest accuracy</th><th>agreement with model</th>
<th>mean L1 to model</th>{head}<th>description</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _remote_section(target: dict[str, Any]) -> str:
    """For a remote campaign: who authorised it, and what was paid for attacks vs evaluation."""
    auth, paid = target.get("authorization"), target.get("paid_queries")
    if not isinstance(auth, dict) or not isinstance(paid, dict):
        return ""
    who = ", ".join(html.escape(f"{k}: {v}") for k, v in auth.items() if k != "statement")
    attack_rows = " + ".join(f"{html.escape(str(k))} {v}" for k, v in paid.get("attack", {}).items()) or "0"
    return (
        f"<h2>Remote campaign</h2>\n<p id=\"authorization\">Authorised: &ldquo;{html.escape(str(auth.get('statement', '')))}"
        f"&rdquo; ({who})</p>\n<p id=\"paid\">Paid queries: attacks {attack_rows}; evaluation {paid.get('evaluation', 0)} "
        f"(the probe set's answers, fetched once from the endpoint to measure fidelity, <b>not</b> charged to any "
        f"attack's budget); total {paid.get('total', 0)}, spend {paid.get('spend', 0)}.</p>\n"
    )


def render_html(assessment: Assessment, png: bytes) -> str:
    """The report page as one HTML string."""
    a = assessment
    img = base64.b64encode(png).decode("ascii")
    target_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v) if not isinstance(v, dict) else html.escape(json.dumps(v))}</td></tr>"
        for k, v in a.target.items()
    )
    summary = []
    for run in a.runs:
        best = run.best()
        if best is None:
            continue
        cost = "–" if a.price_per_query == 0 else f"{best.spend:.2f}"
        summary.append(
            f"<tr><td>{html.escape(run.attack)}</td><td>{best.fidelity:.3f}</td><td>{best.queries}</td>"
            f"<td>{run.queries}</td><td>{cost}</td><td>{run.seconds:.1f}</td><td>{html.escape(run.paper)}</td></tr>"
        )
    rows = []
    for run in a.runs:
        for p in run.points:
            rows.append(
                f"<tr><td>{html.escape(run.attack)}</td><td>{p.budget}</td><td>{p.queries}</td><td>{_fmt(p.fidelity)}</td>"
                f"<td>{_fmt(p.accuracy)}</td><td>{_fmt(p.l1)}</td><td>{_fmt(p.kl)}</td><td>{_fmt(p.spend, 2)}</td>"
                f"<td>{_fmt(p.train_seconds, 2)}</td></tr>"
            )
    victim_acc = "–" if a.victim_probe_accuracy is None else f"{a.victim_probe_accuracy:.3f}"
    remote = _remote_section(a.target)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ExtractGuard assessment</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>How stealable is this model?</h1>
<p class="meta">ExtractGuard {html.escape(a.tool.get("extractguard", ""))} · started {html.escape(a.started_at)} ·
took {a.seconds:.1f} s · output mode <code>{html.escape(a.output)}</code> · seed {a.seed}</p>
<p>Each attack queried the model through a budgeted oracle and trained a copy at every budget on the ladder
({", ".join(str(b) for b in a.budgets)} queries). Fidelity is the fraction of the {a.probe_size} held-out probe
inputs, never queried by any attack, on which the copy predicts the same class as the model. The model's own
accuracy on them is {victim_acc}.</p>
{_variants_html(a)}
<h2>Fidelity vs queries{" (reference variant)" if a.variants else ""}</h2>
<img id="curves" alt="Fidelity and accuracy of the stolen copy against the number of queries" src="data:image/png;base64,{img}">
<h2>Summary</h2>
<table id="summary"><thead><tr><th>attack</th><th>best fidelity</th><th>at queries</th><th>queries used</th>
<th>cost</th><th>seconds</th><th>paper</th></tr></thead><tbody>{"".join(summary)}</tbody></table>
<h2>Every checkpoint</h2>
<table id="points"><thead><tr><th>attack</th><th>budget</th><th>real queries</th><th>fidelity</th><th>accuracy</th>
<th>mean L1</th><th>mean KL</th><th>spend</th><th>train s</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
{remote}<h2>Target</h2>
<table class="kv"><tbody>{target_rows}</tbody></table>
</body></html>
"""


def write_report(assessment: Assessment, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    html_path = out / "report.html"
    json_path.write_text(json.dumps(assessment.to_dict(), indent=2) + "\n", encoding="utf-8")
    html_path.write_text(render_html(assessment, plot_curves(assessment)), encoding="utf-8")
    return json_path, html_path
