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
from extractguard.evaluate.results import MatrixReport

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem}
.meta{color:#5b6475;font-size:.9rem} table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #e3e6ec;padding:.35rem .6rem;text-align:right} th:first-child,td:first-child{text-align:left}
th{background:#f5f7fa} img{max-width:100%;border:1px solid #e3e6ec} code{background:#f5f7fa;padding:0 .2rem}
.kv td{text-align:left}
"""


def _png_bytes(fig: Figure) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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
    return _png_bytes(fig)


def plot_variants(assessment: Assessment) -> bytes:
    """Security vs utility per variant: stolen fidelity vs queries, and vs honest-user accuracy."""
    fig = Figure(figsize=(10, 4.2), dpi=110)
    ax_c, ax_t = fig.subplots(1, 2)
    top = str(assessment.budgets[-1])
    for v in assessment.variants:
        budgets = sorted(int(b) for b in v.best_fidelity)
        ax_c.plot(budgets, [v.best_fidelity[str(b)] for b in budgets], marker="o", label=v.name)
        acc = v.honest_user.accuracy
        if acc is None:
            acc = 1.0 if v.honest_user.agreement is None else v.honest_user.agreement
        fid = v.best_fidelity.get(top)
        if fid is not None:
            ax_t.scatter([acc], [fid], s=40)
            ax_t.annotate(v.name, (acc, fid), textcoords="offset points", xytext=(5, 4), fontsize=8)
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
    return _png_bytes(fig)


def _variants_html(a: Assessment) -> str:
    if not a.variants:
        return ""
    img = base64.b64encode(plot_variants(a)).decode("ascii")
    head = "".join(f"<th>fidelity @ {b}</th>" for b in a.budgets)
    rows = []
    for v in a.variants:
        hu = v.honest_user
        cells = "".join(f"<td>{_fmt(v.best_fidelity.get(str(b)))}</td>" for b in a.budgets)
        name = html.escape(v.name) + (" (reference)" if v.reference else "")
        # the reference's answers stand for the real model: it agrees with itself, at distance 0
        agreement = hu.agreement if hu.agreement is not None else (1.0 if v.reference else None)
        l1 = hu.mean_l1 if hu.mean_l1 is not None else (0.0 if v.reference else None)
        rows.append(
            f"<tr><td>{name}</td><td>{html.escape(v.output)}</td><td>{_fmt(hu.accuracy)}</td>"
            f"<td>{_fmt(agreement)}</td><td>{_fmt(l1)}</td>{cells}"
            f"<td>{html.escape(v.description or '')}</td></tr>"
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


# -- the assessment matrix (``extractguard assess --config``) ----------------------------------
_RESPONSE_OFFSET = {"flag": -0.27, "throttle": -0.09, "challenge": 0.09, "suspend": 0.27}
_RESPONSE_STYLE = {"flag": ("o", "#d9a400"), "throttle": ("s", "#e07b00"), "challenge": ("D", "#c2410c"), "suspend": ("X", "#b91c1c")}


def _png(fig: Figure) -> str:
    return base64.b64encode(_png_bytes(fig)).decode("ascii")


def plot_matrix_curves(report: MatrixReport) -> str:
    """Fidelity vs queries, one panel per defense, one line per attack (base64 PNG).

    A cross marks where the account would have been suspended."""
    names = list(report.defenses)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(4.0 * cols, 3.2 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    colors = {a: f"C{i}" for i, a in enumerate(report.attacks)}
    for i, name in enumerate(names):
        ax = axes[i // cols][i % cols]
        for c in (c for c in report.cells if c.defense == name):
            q = [p.queries for p in c.points]
            ax.plot(q, [p.fidelity for p in c.points], marker="o", markersize=3, color=colors[c.attack], label=c.attack)
            sus = c.enforced.suspended_at
            if sus is not None:
                ax.axvline(max(sus, 1), color=colors[c.attack], linestyle=":", linewidth=1)
                ax.plot([max(sus, 1)], [c.enforced.fidelity or 0.0], marker="X", markersize=8, color=colors[c.attack])
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("queries", fontsize=8)
        ax.set_ylabel("stolen fidelity", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    return _png(fig)


def plot_frontier(report: MatrixReport) -> str:
    """Security / utility frontier: best stolen fidelity vs honest agreement, one point per defense."""
    fig = Figure(figsize=(7, 4.6), dpi=100)
    ax = fig.subplots()
    pts = [(p, p.fidelity) for p in report.frontier if p.fidelity is not None]
    stacked: dict[tuple[float, float], list[str]] = {}
    for p, fid in pts:
        style = dict(s=70, color="#1d4ed8" if p.pareto else "#94a3b8", zorder=3, edgecolor="black" if p.pareto else "none")
        ax.scatter([p.utility], [fid], **style)
        if p.fidelity_enforced is not None and p.fidelity_enforced < fid:
            ax.scatter([p.utility], [p.fidelity_enforced], s=60, facecolors="none", edgecolors="#b91c1c", zorder=3)
            ax.plot([p.utility] * 2, [fid, p.fidelity_enforced], color="#b91c1c", linestyle=":", linewidth=1)
        # defenses often land on the same point: one label naming all of them, not overprinted names
        stacked.setdefault((round(p.utility, 6), round(fid, 6)), []).append(p.defense)
    for (x, y), names in stacked.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(7, 3), fontsize=8)
    front = sorted(((p, fid) for p, fid in pts if p.pareto), key=lambda pf: pf[0].utility)
    if len(front) > 1:
        ax.plot([p.utility for p, _ in front], [fid for _, fid in front], color="#1d4ed8", linewidth=1.2, label="Pareto front")
    if any(p.fidelity_enforced is not None and p.fidelity_enforced < fid for p, fid in pts):
        ax.scatter([], [], s=60, facecolors="none", edgecolors="#b91c1c", label="with suspension enforced")
    ax.scatter([], [], s=60, color="#1d4ed8", edgecolor="black", label="Pareto-optimal defense")
    if pts:  # zoom on the points, but never to a span so small that noise looks like a gap
        ys = [fid for _, fid in pts] + [p.fidelity_enforced for p, _ in pts if p.fidelity_enforced is not None]
        xs = [p.utility for p, _ in pts]
        lo, hi = min(ys), max(ys)
        pad = max(0.05, (hi - lo) * 0.15)
        ax.set_ylim(max(0.0, lo - pad), min(1.02, hi + pad))
        xpad = max(0.01, (max(xs) - min(xs)) * 0.15)
        ax.set_xlim(min(xs) - xpad, min(1.0 + xpad, max(xs) + 3 * xpad))
    ax.set_xlabel("honest users' agreement with the real model")
    ax.set_ylabel(f"best stolen fidelity at {report.budgets[-1]} queries")
    ax.set_title("Security / utility frontier (lower right is better)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def plot_detection_timeline(report: MatrixReport) -> str | None:
    """Per cell with detection: the query count at which each signal fired (dots) and each
    graduated response would start (markers); ``None`` when no defense detects."""
    cells = [c for c in report.cells if c.detection.enabled]
    if not cells:
        return None
    fig = Figure(figsize=(9, 0.6 * len(cells) + 1.6), dpi=100)
    ax = fig.subplots()
    top = max(report.budgets)
    for y, c in enumerate(cells):
        ax.plot([1, max(c.queries, 1)], [y, y], color="#cbd5e1", linewidth=14, solid_capstyle="butt", zorder=1)
        for q in c.detection.signals.values():
            ax.scatter([max(q, 1)], [y], s=14, color="#334155", zorder=2)
        for action, q in c.detection.responses.items():
            if q is not None:  # each response on its own line of the band, so equal counts stay visible
                m, col = _RESPONSE_STYLE[action]
                ax.scatter([max(q, 1)], [y + _RESPONSE_OFFSET[action]], marker=m, s=45, color=col, zorder=3)
        if not c.detection.first_flag:
            ax.annotate("not detected", (max(c.queries, 1), y), textcoords="offset points", xytext=(5, -3), fontsize=7)
    for action, (m, col) in _RESPONSE_STYLE.items():
        ax.scatter([], [], marker=m, s=50, color=col, label=action)
    ax.scatter([], [], s=14, color="#334155", label="a signal fired")
    ax.set_yticks(range(len(cells)))
    ax.set_yticklabels([f"{c.attack} x {c.defense}" for c in cells], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(0.8, top * 1.5)
    ax.invert_yaxis()
    ax.set_xlabel("attacker's queries")
    ax.set_title("Detection timeline: when each detector and response fired", fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def render_matrix_html(report: MatrixReport) -> str:
    """The matrix report page: frontier, curves per defense, detection timeline, cell table."""
    r = report
    top = r.budgets[-1]
    frontier_img = plot_frontier(r)
    curves_img = plot_matrix_curves(r)
    timeline_img = plot_detection_timeline(r)
    timeline = (f'<img id="timeline" alt="Detection timeline per cell" src="data:image/png;base64,{timeline_img}">'
                if timeline_img else '<p id="timeline-none">No defense in this grid runs detection.</p>')
    drows = []
    for p in r.frontier:
        d = r.defenses[p.defense]
        h, spec = d.honest, d.spec
        chain = ", ".join(x.get("name", "?") for x in spec.get("defenses", [])) or (
            f"deployed variant {spec['variant']}" if "variant" in spec and "gateway" not in spec else "–")
        extras = [k for k in ("watermark", "detection") if k in spec]
        drows.append(
            f"<tr><td>{html.escape(p.defense)}{' ★' if p.pareto else ''}</td><td>{html.escape(spec.get('output', ''))}</td>"
            f"<td>{html.escape(chain)}</td><td>{html.escape(', '.join(extras) or '–')}</td><td>{_fmt(p.fidelity)}</td>"
            f"<td>{_fmt(p.fidelity_enforced)}</td><td>{_fmt(h.agreement)}</td><td>{_fmt(h.accuracy)}</td>"
            f"<td>{_fmt(h.mean_l1)}</td><td>{'–' if h.flagged is None else ('yes' if h.flagged else 'no')}</td></tr>"
        )
    crows = []
    for c in r.cells:
        fid = {p.budget: p for p in c.points}
        det, enf, cost = c.detection, c.enforced, c.cost
        flagged = "off" if not det.enabled else (str(det.first_flag) if det.first_flag else "not detected")
        resp = "–" if not det.enabled else ", ".join(f"{a} {q}" for a, q in det.responses.items() if q is not None) or "none"
        wp = fid[top].watermark_p if top in fid else None
        cells_b = "".join(f"<td>{_fmt(fid[b].fidelity) if b in fid else '–'}</td>" for b in r.budgets)
        enforced = ("–" if enf.suspended_at is None else
                    f"{_fmt(enf.fidelity) if enf.fidelity is not None else 'no copy'} (suspended at {enf.suspended_at})")
        err = f'<br><span class="err">{html.escape(c.error)}</span>' if c.error else ""
        crows.append(
            f"<tr><td>{html.escape(c.attack)}{err}</td><td>{html.escape(c.defense)}</td>{cells_b}<td>{enforced}</td>"
            f"<td>{flagged}</td><td>{html.escape(resp)}</td><td>{'–' if wp is None else f'{wp:.2g}'}</td>"
            f"<td>{c.queries}</td><td>{_fmt(cost.spend, 2)}</td><td>{cost.pow_hashes:.3g}</td>"
            f"<td>{_fmt(cost.throttle_wait_seconds, 0)}</td><td>{_fmt(cost.cpu_seconds, 1)}</td></tr>"
        )
    head_b = "".join(f"<th>fid@{b}</th>" for b in r.budgets)
    target_rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v) if not isinstance(v, dict) else html.escape(json.dumps(v))}</td></tr>"
        for k, v in r.target.items()
    )
    victim_acc = "–" if r.victim_probe_accuracy is None else f"{r.victim_probe_accuracy:.3f}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ExtractGuard assessment matrix</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS} .err{{color:#b91c1c;font-size:.8rem}}</style></head>
<body>
<h1>Which defense should this model run?</h1>
<p class="meta">ExtractGuard {html.escape(r.tool.get('extractguard', ''))} · started {html.escape(r.started_at)} ·
took {r.seconds:.1f} s · {len(r.attacks)} attacks × {len(r.defenses)} defenses · seed {r.seed}</p>
<p>Every attack ran against every defense through the gateway's own pipeline (detection on the model's answers, then the
defense chain, the keyed watermark and the output mode), over the ladder {", ".join(map(str, r.budgets))} queries.
Stolen fidelity is agreement with the real model on {r.probe_size} held-out probe rows no attack queried (the model's own
accuracy on them: {victim_acc}). Honest utility is measured on {r.honest_rows} honest rows sent through each defense
(agreement of the served answers with the real model). <b>Without enforcement</b> is the copy the attacker holds if nobody
acts on the alarms; <b>enforced</b> is the copy at the last budget reached before the account would be suspended.</p>
<h2>Security / utility frontier</h2>
<img id="frontier" alt="Best stolen fidelity against honest users' agreement, one point per defense" src="data:image/png;base64,{frontier_img}">
<table id="defenses-table"><thead><tr><th>defense (★ Pareto)</th><th>output</th><th>chain</th><th>also</th><th>stolen fid@{top}</th>
<th>enforced</th><th>honest agreement</th><th>honest accuracy</th><th>mean L1</th><th>honest flagged</th></tr></thead>
<tbody>{"".join(drows)}</tbody></table>
<h2>Fidelity vs queries, per defense</h2>
<img id="curves" alt="Stolen fidelity against queries, one panel per defense" src="data:image/png;base64,{curves_img}">
<h2>Detection timeline</h2>
{timeline}
<h2>Every cell</h2>
<table id="cells"><thead><tr><th>attack</th><th>defense</th>{head_b}<th>enforced</th><th>flagged at</th><th>responses at</th>
<th>watermark p@{top}</th><th>queries</th><th>spend</th><th>PoW hashes</th><th>throttle wait s</th><th>CPU s</th></tr></thead>
<tbody>{"".join(crows)}</tbody></table>
<h2>Target</h2>
<table class="kv"><tbody>{target_rows}</tbody></table>
</body></html>
"""


def write_matrix_report(report: MatrixReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the matrix's ``report.json`` and ``report.html`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False, default=_json_default) + "\n", encoding="utf-8")
    html_path.write_text(render_matrix_html(report), encoding="utf-8")
    return json_path, html_path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")
