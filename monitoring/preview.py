"""A self-contained HTML *preview* of a Grafana dashboard JSON, plotted from a real Prometheus.

Why this exists: Grafana itself cannot be installed where the tests run (no Debian package, no
PyPI/npm build of the server), yet the dashboards' queries must be proven against real data and
the result seen in a real browser.  This page is NOT Grafana: it reads the same dashboard file,
substitutes the template variables, sends every panel's PromQL to Prometheus' HTTP API
(``/api/v1/query`` or ``/api/v1/query_range``) from the browser and draws plain SVG (lines for
time series, cells for heatmaps, bars, stat numbers, tables).  Each panel ends with
``data-state`` = ``ok`` | ``empty`` | ``error`` and a query failure is a ``console.error``, so a
headless browser can check it (tests/gateway/test_monitoring.py).

Usage (stdlib only)::

    python monitoring/preview.py monitoring/grafana/extractguard-oncall.json \\
        --prometheus http://127.0.0.1:9090 -o oncall.html

Serve the page over http:// (e.g. ``python -m http.server``): Prometheus answers cross-origin
requests by default (``--web.cors.origin=.*``).
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path
from typing import Any

#: Grafana's built-in interval variables, for a short preview window.
DEFAULT_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace ``$name``, ``${name}`` and ``[[name]]`` like Grafana does (longest names first)."""
    for name in sorted(variables, key=len, reverse=True):
        value = variables[name]
        expr = expr.replace("${" + name + "}", value).replace("[[" + name + "]]", value)
        expr = re.sub(r"\$" + re.escape(name) + r"(?![A-Za-z0-9_])", lambda _m, v=value: v, expr)
    return expr


def dashboard_variables(dashboard: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Every template variable of the dashboard set to "All" (its allValue, else ``.*``)."""
    out = dict(DEFAULT_VARIABLES)
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            out[v["name"]] = v.get("allValue") or ".*"
    out.update(overrides or {})
    return out


def panel_queries(dashboard: dict[str, Any], variables: dict[str, str]) -> list[dict[str, Any]]:
    """The panels as the preview needs them: id, type, title, options and substituted targets."""
    panels = []
    for p in dashboard.get("panels", []):
        targets = [
            {"refId": t.get("refId", ""), "expr": substitute(t["expr"], variables), "legend": t.get("legendFormat", ""),
             "instant": bool(t.get("instant")) and not t.get("range", False), "format": t.get("format", "time_series")}
            for t in p.get("targets", []) if t.get("expr")
        ]
        panels.append({"id": p["id"], "type": p["type"], "title": p.get("title", ""), "gridPos": p["gridPos"],
                       "unit": p.get("fieldConfig", {}).get("defaults", {}).get("unit", ""),
                       "content": p.get("options", {}).get("content", ""), "targets": targets})
    return panels


_SCRIPT = r"""
const C = JSON.parse(document.getElementById('config').textContent);
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs, parent, ns) {
  const e = ns ? document.createElementNS(NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function legend(fmt, metric) {
  if (!fmt) return JSON.stringify(metric);
  return fmt.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] ?? '');
}
async function query(t) {
  const now = Date.now() / 1000;
  const params = new URLSearchParams({query: t.expr});
  let path = '/api/v1/query';
  if (t.instant) { params.set('time', now); }
  else { path = '/api/v1/query_range'; params.set('start', now - C.window); params.set('end', now); params.set('step', C.step); }
  const r = await fetch(C.prometheus + path + '?' + params.toString());
  const j = await r.json();
  if (j.status !== 'success') throw new Error(`${t.refId}: ${j.errorType}: ${j.error}`);
  return j.data.result.map(s => ({name: legend(t.legend, s.metric), metric: s.metric,
    points: (s.values || [s.value]).map(([x, y]) => [Number(x), Number(y)]).filter(([, y]) => Number.isFinite(y))}));
}
function fmt(v, unit) {
  if (unit === 'percentunit') return (100 * v).toFixed(1) + ' %';
  if (unit === 's') return v < 1 ? (1000 * v).toFixed(2) + ' ms' : v.toFixed(3) + ' s';
  return Math.abs(v) >= 1000 ? v.toExponential(2) : (+v.toPrecision(4)).toString();
}
function buckets(series) {  // cumulative le buckets -> [[le, count in bucket]]
  const s = series.filter(x => x.metric.le !== undefined && x.points.length)
    .map(x => [x.metric.le === '+Inf' ? Infinity : Number(x.metric.le), x.points[x.points.length - 1][1], x.metric.le])
    .sort((a, b) => a[0] - b[0]);
  return s.map(([, v, le], i) => [le, v - (i ? s[i - 1][1] : 0)]);
}
function lines(box, series, unit) {
  const W = 560, H = 180, svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'plot'}, box, true);
  const pts = series.flatMap(s => s.points);
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(0, ...ys), y1 = Math.max(...ys, y0 + 1e-12);
  const sx = x => 40 + (W - 50) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5), sy = y => H - 20 - (H - 30) * (y - y0) / (y1 - y0);
  el('line', {x1: 40, y1: H - 20, x2: W - 10, y2: H - 20, stroke: '#999'}, svg, true);
  el('text', {x: 2, y: 12, 'font-size': 10}, svg, true).textContent = fmt(y1, unit);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map(([x, y], j) => `${j ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    el('path', {d, fill: 'none', stroke: `hsl(${(i * 67) % 360},70%,45%)`, 'stroke-width': 1.5, class: 'series'}, svg, true)
      .appendChild(document.createElementNS(NS, 'title')).textContent = s.name;
  });
  const ul = el('ul', {class: 'legend'}, box);
  series.forEach((s, i) => { el('li', {style: `color:hsl(${(i * 67) % 360},70%,45%)`}, ul).textContent = s.name; });
}
function heatmap(box, series) {  // one column per time step, one row per bucket
  const rows = series.filter(s => s.metric.le !== undefined)
    .sort((a, b) => (a.metric.le === '+Inf' ? Infinity : +a.metric.le) - (b.metric.le === '+Inf' ? Infinity : +b.metric.le));
  const times = [...new Set(rows.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => a - b);
  const W = 560, H = 180, svg = el('svg', {width: W, height: H, class: 'plot'}, box, true);
  const cw = (W - 40) / Math.max(times.length, 1), ch = (H - 10) / Math.max(rows.length, 1);
  const val = (s, t) => (s.points.find(p => p[0] === t) || [t, 0])[1];
  let max = 0; const cells = [];
  times.forEach((t, i) => rows.forEach((s, j) => {
    const v = val(s, t) - (j ? val(rows[j - 1], t) : 0); max = Math.max(max, v); cells.push([i, j, v]);
  }));
  cells.forEach(([i, j, v]) => el('rect', {x: 40 + i * cw, y: H - 10 - (j + 1) * ch, width: cw, height: ch, class: 'cell',
    fill: `rgba(230,110,20,${max > 0 ? (v / max).toFixed(3) : 0})`}, svg, true));
  rows.forEach((s, j) => { el('text', {x: 2, y: H - 10 - j * ch - 2, 'font-size': 9}, svg, true).textContent = s.metric.le; });
}
function bars(box, items, unit) {
  const max = Math.max(...items.map(i => i[1]), 1e-12);
  const div = el('div', {class: 'bars'}, box);
  for (const [name, v] of items) {
    const row = el('div', {class: 'bar-row'}, div);
    el('span', {class: 'bar-label'}, row).textContent = name;
    el('span', {class: 'bar', style: `width:${Math.max(1, 300 * v / max)}px`}, row);
    el('span', {class: 'bar-value'}, row).textContent = fmt(v, unit);
  }
}
function table(box, series) {
  const keys = [...new Set(series.flatMap(s => Object.keys(s.metric)))];
  const t = el('table', {class: 'table'}, box), head = el('tr', {}, t);
  [...keys, 'value'].forEach(k => { el('th', {}, head).textContent = k; });
  for (const s of series) {
    const tr = el('tr', {}, t);
    keys.forEach(k => { el('td', {}, tr).textContent = s.metric[k] ?? ''; });
    el('td', {}, tr).textContent = s.points.length ? fmt(s.points[s.points.length - 1][1]) : '';
  }
}
async function panel(p) {
  const box = el('section', {class: 'panel', 'data-panel-id': p.id, 'data-type': p.type, 'data-state': 'loading'}, document.getElementById('grid'));
  box.style.gridColumn = `${p.gridPos.x + 1} / span ${p.gridPos.w}`;
  el('h2', {}, box).textContent = p.title;
  if (p.type === 'text') { el('pre', {class: 'text'}, box).textContent = p.content; box.dataset.state = 'ok'; return; }
  try {
    const series = (await Promise.all(p.targets.map(query))).flat();
    box.dataset.series = series.length;
    if (!series.some(s => s.points.length)) { box.dataset.state = 'empty'; el('p', {class: 'nodata'}, box).textContent = 'No data'; return; }
    if (p.type === 'timeseries') lines(box, series, p.unit);
    else if (p.type === 'heatmap') heatmap(box, series);
    else if (p.type === 'stat') { el('div', {class: 'stat'}, box).textContent = fmt(series[0].points[series[0].points.length - 1][1], p.unit); }
    else if (p.type === 'bargauge') {
      const b = p.targets.some(t => t.format === 'heatmap') ? buckets(series) : series.map(s => [s.name, s.points[s.points.length - 1][1]]);
      bars(box, b, p.unit);
    } else if (p.type === 'table') table(box, series);
    else throw new Error(`panel type ${p.type} has no preview`);
    box.dataset.state = 'ok';
  } catch (e) {
    box.dataset.state = 'error';
    el('p', {class: 'error'}, box).textContent = String(e);
    console.error(`panel ${p.id} (${p.title}): ${e}`);
  }
}
Promise.all(C.panels.map(panel)).then(() => { document.body.dataset.done = '1'; });
"""

_STYLE = """
body{font-family:sans-serif;margin:12px;background:#f7f7f9}
#grid{display:grid;grid-template-columns:repeat(24,1fr);gap:8px}
.panel{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px;overflow:hidden}
.panel h2{font-size:13px;margin:0 0 6px}
.stat{font-size:32px;font-weight:bold}
.legend{font-size:10px;margin:0;padding-left:14px}
.bar-row{font-size:11px;display:flex;gap:6px;align-items:center}
.bar-label{width:120px;overflow:hidden}.bar{background:#3274d9;height:10px;display:inline-block}
.table{font-size:11px;border-collapse:collapse}.table td,.table th{border:1px solid #ddd;padding:2px 4px}
.text{white-space:pre-wrap;font-size:11px}.error{color:#b00}.nodata{color:#888}
"""


def render(dashboard: dict[str, Any], prometheus_url: str, variables: dict[str, str] | None = None,
           window_seconds: int = 600, step_seconds: int = 5) -> str:
    """The preview page of ``dashboard``; its script queries ``prometheus_url`` when opened."""
    config = {"prometheus": prometheus_url.rstrip("/"), "window": window_seconds, "step": step_seconds,
              "panels": panel_queries(dashboard, dashboard_variables(dashboard, variables))}
    data = json.dumps(config).replace("</", "<\\/")  # nothing in the JSON can close the script tag
    title = html.escape(str(dashboard.get("title", "dashboard")))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title} (preview)</title><link rel='icon' href='data:,'>"
            f"<style>{_STYLE}</style></head><body><h1>{title} <small>preview, not Grafana</small></h1>"
            f"<div id='grid'></div><script type='application/json' id='config'>{data}</script>"
            f"<script>{_SCRIPT}</script></body></html>")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dashboard", type=Path)
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="template variable, e.g. account=alice")
    ap.add_argument("--window", type=int, default=3600, help="seconds of history the range panels show")
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        dashboard = json.loads(args.dashboard.read_text())
        overrides = dict(v.split("=", 1) for v in args.var)
    except (OSError, ValueError) as exc:
        ap.error(f"{args.dashboard}: {exc}")
    page = render(dashboard, args.prometheus, overrides, window_seconds=args.window, step_seconds=max(1, args.window // 240))
    out = args.output or args.dashboard.with_suffix(".preview.html")
    out.write_text(page)
    print(out)


if __name__ == "__main__":
    main()
