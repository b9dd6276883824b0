"""Monitoring assets: Prometheus rules (promtool), Grafana dashboards, against a real gateway.

* ``promtool check rules`` and ``promtool test rules`` on monitoring/prometheus/ (skipped without
  promtool locally; EXTRACTGUARD_REQUIRE_PROMTOOL=1, set by .ci/run, makes that a failure);
* every metric the rules and dashboards name is exported by a running gateway (uvicorn) after
  traffic that includes a 429, watermarked answers and a detection alarm;
* a real Prometheus (Debian binary, loopback, 1 s scrape) scrapes that gateway with our rules
  loaded: every rule evaluates without error, the risk alert goes pending for the right account,
  and every dashboard query is valid and returns data;
* each dashboard is rendered in headless Chromium through monitoring/preview.py (a preview page,
  not Grafana) plotting the real Prometheus data: panels drawn, no console errors.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from checkout import ROOT
from extractguard.gateway import create_app, parse_config
from gateway_helpers import UvicornThread, free_port, infer_body

PROM_DIR = ROOT / "monitoring" / "prometheus"
RULES = PROM_DIR / "extractguard-rules.yml"
RULE_TESTS = PROM_DIR / "extractguard-rules.test.yml"
DASHBOARDS = {p.stem: p for p in sorted((ROOT / "monitoring" / "grafana").glob("*.json"))}
DOC = ROOT / "docs" / "monitoring.md"

sys.path.insert(0, str(ROOT / "monitoring"))
import preview  # noqa: E402  (monitoring/preview.py is a stand-alone script, not a package)

METRIC_RE = re.compile(r"\bextractguard_[a-z0-9_]+")
RECORDED_RE = re.compile(r"\bextractguard:[a-z0-9_:]+")
#: Panels allowed to have no data in the test (none: every panel must plot real data).
EXPECTED_EMPTY: set[str] = set()
#: Template values for the tests: everything, over windows that cover the test's traffic.
TEST_VARIABLES = {"__rate_interval": "1m", "__range": "10m"}


def binary(name: str) -> str:
    """Path of a Prometheus tool, or skip (fail when EXTRACTGUARD_REQUIRE_PROMTOOL=1)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian: apt-get install -y prometheus)"
        if os.environ.get("EXTRACTGUARD_REQUIRE_PROMTOOL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard(name: str) -> dict[str, Any]:
    return json.loads(DASHBOARDS[name].read_text())


def all_targets(d: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for p in d["panels"]:
        for t in p.get("targets", []):
            yield p, t


# -- promtool ------------------------------------------------------------------------------------
def test_promtool_check_rules() -> None:
    out = subprocess.run([binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout + out.stderr


def test_promtool_test_rules() -> None:
    out = subprocess.run([binary("promtool"), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                         timeout=120, cwd=PROM_DIR)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_is_labelled_documented_and_unit_tested() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    silent = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if not c.get("exp_alerts")}
    doc = DOC.read_text().lower()
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 8
    for r in alerts:
        name = r["alert"]
        assert r["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert r["annotations"]["summary"], name
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert r["annotations"]["runbook_url"].startswith("docs/monitoring.md#"), name
        assert f"### {anchor}" in doc, f"docs/monitoring.md has no '### {anchor}' heading for {name}"
        assert name in fired, f"no promtool test makes {name} fire"
    # the extraction alerts are also shown to stay silent on normal traffic
    for name in ("ExtractGuardAccountRateFarAboveBaseline", "ExtractGuardExtractionRiskHigh", "ExtractGuard429Surge",
                 "ExtractGuardDetectionSanction"):
        assert name in silent, name


# -- dashboards: structure -----------------------------------------------------------------------
def test_dashboards_are_well_formed_grafana_json() -> None:
    assert set(DASHBOARDS) == {"extractguard-executive", "extractguard-oncall", "extractguard-debug"}
    uids = set()
    for name in DASHBOARDS:
        d = dashboard(name)
        assert d["uid"] not in uids and d["title"] and d["schemaVersion"] >= 36
        uids.add(d["uid"])
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
        builtins = {"__rate_interval", "__interval", "__range"}
        ids, cells = set(), set()
        for p in d["panels"]:
            assert p["id"] not in ids, (name, p["id"])
            ids.add(p["id"])
            g = p["gridPos"]
            assert all(isinstance(g[k], int) for k in "hwxy") and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, f"{name}: panel {p['title']!r} overlaps another"
            cells |= area
            if p["type"] == "text":
                assert p["options"]["content"]
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, (name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), (name, p["title"])
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
                used = set(re.findall(r"\$\{?(\w+)", t["expr"]))
                assert used <= set(variables) | builtins, (name, p["title"], used)
        for v in variables.values():
            if v["type"] == "query":
                assert v["datasource"]["uid"] == "${DS_PROMETHEUS}" and v["allValue"] == ".*"
    assert "account" in {v["name"] for v in dashboard("extractguard-oncall")["templating"]["list"]}


# -- a real gateway with traffic -----------------------------------------------------------------
RISK_TIER = {"output": "probabilities", "detection": {
    "detectors": ["rate"], "baseline_rows_per_hour": 600,  # alarm above 100 rows in a minute
    "responses": {"flag": 1.0, "challenge": 20.0, "suspend": 40.0}}}


class Traffic:
    """Drives a gateway: a 429 for alice, watermarked (and replayed) answers for bob, an alarm for mallory."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url, self.keys = url, keys
        self.rng = np.random.default_rng(0)
        self.codes: dict[str, list[int]] = {k: [] for k in keys}
        self.late = False
        self.wm_rows = self.rows(40)

    def rows(self, n: int) -> np.ndarray:
        return self.rng.integers(0, 17, size=(n, 64)).astype(np.float64)  # digits: 8x8 pixels in 0..16

    def post(self, who: str, X: np.ndarray) -> int:
        r = httpx.post(f"{self.url}/v2/models/digits/infer", json=infer_body(X),
                       headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=30)
        self.codes[who].append(r.status_code)
        return r.status_code

    def round(self) -> None:
        for _ in range(4):
            self.post("alice", self.rows(3))  # free tier, 10 rows/minute: the 4th request is a 429
        self.post("bob", self.wm_rows)  # the same 40 rows every round: replays of recorded inputs
        for _ in range(2):
            self.post("mallory", self.rows(60))
        self.post("carol", self.rows(5))
        if self.late:  # flagged while Prometheus watches, so increase() sees the escalation
            for _ in range(2):
                self.post("trudy", self.rows(60))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    state = tmp_path_factory.mktemp("gw-monitoring")
    cfg = parse_config({
        "model": {"name": "digits", "victim": "digits-logreg"},
        "state_dir": str(state), "storage": "memory://", "seed": 0,
        "tiers": {
            "free": {"output": "label", "limits": ["10/minute"], "price_per_row": 0.01},
            "marked": {"output": "probabilities", "watermark": {"fraction": 0.2}, "price_per_row": 0.001},
            "watched": RISK_TIER,
            "raw": {"output": "probabilities"},
        },
        "max_rows_per_request": 100, "max_body_bytes": 262144,
    })
    app = create_app(cfg)
    ks = app.state.gateway.keys
    keys = {"alice": ks.create("alice", "free"), "bob": ks.create("bob", "marked"),
            "mallory": ks.create("mallory", "watched"), "carol": ks.create("carol", "raw"), "trudy": ks.create("trudy", "watched")}
    with UvicornThread(app) as server:
        traffic = Traffic(server.url, keys)
        traffic.round()
        yield traffic


def exported(url: str) -> dict[str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def referenced_metrics() -> dict[str, set[str]]:
    """Metric names (``extractguard_*``) each asset refers to."""
    out = {RULES.name: set(METRIC_RE.findall(" ".join(r["expr"] for r in rules())))}
    for name in DASHBOARDS:
        d = dashboard(name)
        texts = [t["expr"] for _, t in all_targets(d)] + [v.get("definition", "") for v in d["templating"]["list"]]
        out[name] = set(METRIC_RE.findall(" ".join(texts)))
    return out


def test_every_metric_in_rules_and_dashboards_is_exported(gateway: Traffic) -> None:
    assert 429 in gateway.codes["alice"] and set(gateway.codes["bob"]) == {200}
    samples = exported(gateway.url)
    for asset, names in referenced_metrics().items():
        missing = sorted(names - set(samples))
        assert not missing, f"{asset} refers to metrics the gateway does not export: {missing}"
    recorded = {r["record"] for r in rules() if "record" in r}
    for name in DASHBOARDS:
        used = set(RECORDED_RE.findall(" ".join(t["expr"] for _, t in all_targets(dashboard(name)))))
        assert used <= recorded, (name, used - recorded)

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items()))

    assert value("extractguard_account_requests_total", account="alice", code="429") == 1
    assert value("extractguard_account_refusals_total", account="alice", reason="rate_limited") == 1
    assert value("extractguard_account_rows_total", account="alice") == 9
    assert value("extractguard_account_spend_total", account="alice") == pytest.approx(0.09)
    assert value("extractguard_spend_total", tier="free") == pytest.approx(0.09)
    assert value("extractguard_watermarked_rows_total", tier="marked") == value("extractguard_account_watermarked_rows_total", account="bob") > 0
    assert value("extractguard_account_risk", account="mallory") >= 1.0 > value("extractguard_account_risk", account="carol")
    assert value("extractguard_answer_confidence_ratio_count", tier="raw") == 5
    for s in samples["extractguard_account_rows_total"]:  # the account name, never a key or an IP
        assert s.labels["account"] in gateway.keys and not s.labels["account"].startswith("eg_")


# -- a real Prometheus scraping the gateway, our rules loaded ----------------------------------
class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30).json()
        assert r["status"] == "success", (expr, r)
        return r["data"]["result"]

    def wait_for(self, expr: str, what: str, tries: int = 300) -> list[dict[str, Any]]:
        for _ in range(tries):  # polling for scrapes, not a timing assertion
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.1)
        pytest.fail(f"Prometheus never showed {what} ({expr})")


@pytest.fixture(scope="module")
def prometheus(gateway: Traffic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    exe = binary("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    target = gateway.url.removeprefix("http://")
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "extractguard", "static_configs": [{"targets": [target]}]}],
    }))
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen([exe, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--web.cors.origin=.*", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        prom = Prometheus(f"http://127.0.0.1:{port}")
        for _ in range(300):
            try:
                if httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.1)
        prom.wait_for('up{job="extractguard"} == 1', "the gateway scraped")
        gateway.late = True
        for i in range(3):  # each round lands in its own scrape, so rates and increases are not all zero
            gateway.round()
            total = sum(s.value for s in exported(gateway.url)["extractguard_account_rows_total"])
            prom.wait_for(f"sum(extractguard_account_rows_total) == {total}", f"late round {i + 1} scraped")
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_rules_evaluate_on_real_gateway_metrics(prometheus: Prometheus) -> None:
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=30).json()["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r.get("alert") or r.get("record") for r in rules()}
    prometheus.wait_for('count(ALERTS{alertname="ExtractGuardExtractionRiskHigh"})', "the risk alert evaluated")
    bad = {r["name"]: r.get("lastError") for g in httpx.get(f"{prometheus.url}/api/v1/rules", timeout=30).json()["data"]["groups"]
           for r in g["rules"] if r["health"] == "err"}
    assert not bad, bad
    pending = prometheus.query('ALERTS{alertname="ExtractGuardExtractionRiskHigh"}')
    assert {a["metric"]["account"] for a in pending} == {"mallory", "trudy"}  # for: 1m, so pending, only for them
    assert {a["metric"]["alertstate"] for a in pending} == {"pending"}
    flagged = prometheus.query('sum by (tier) (increase(extractguard_detection_actions_total{reason="flag"}[10m])) > 0')
    assert [f["metric"]["tier"] for f in flagged] == ["watched"]  # trudy's flag, counted from the 0 exported at start
    rate = prometheus.query('extractguard:account_rows:rate5m{account="mallory"}')
    assert rate and float(rate[0]["value"][1]) > 0


def test_every_dashboard_query_is_valid_and_has_data(prometheus: Prometheus) -> None:
    empty = set()
    for name in DASHBOARDS:
        d = dashboard(name)
        variables = preview.dashboard_variables(d, TEST_VARIABLES)
        for p in d["panels"]:
            results = [prometheus.query(preview.substitute(t["expr"], variables)) for t in p.get("targets", [])]
            if p.get("targets") and not any(results):
                empty.add(p["title"])
        for v in d["templating"]["list"]:
            if v["type"] == "query":  # label_values(metric, label): the variable's choices
                metric, label = re.match(r"label_values\((.+),\s*(\w+)\)", v["definition"]).groups()  # type: ignore[union-attr]
                values = httpx.get(f"{prometheus.url}/api/v1/label/{label}/values",
                                   params={"match[]": preview.substitute(metric, variables)}, timeout=30).json()["data"]
                assert values, (name, v["name"])
    assert empty <= EXPECTED_EMPTY, f"panels without data: {sorted(empty - EXPECTED_EMPTY)}"


# -- dashboards in headless Chromium (preview page, not Grafana) ----------------------------------
@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("previews")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_preview_renders_in_chromium(name: str, prometheus: Prometheus, page_server: tuple[str, Path]) -> None:
    from browser import open_page, require_browser

    require_browser()
    base, root = page_server
    d = dashboard(name)
    (root / f"{name}.html").write_text(preview.render(d, prometheus.url, TEST_VARIABLES, window_seconds=300, step_seconds=2))
    with open_page(f"{base}/{name}.html") as (page, errors):
        page.wait_for_selector("body[data-done='1']")
        states = page.eval_on_selector_all("section.panel", "els => els.map(e => [e.querySelector('h2').textContent, e.dataset.type, e.dataset.state])")
        assert len(states) == len(d["panels"])
        for title, ptype, state in states:
            assert state == "ok" or (state == "empty" and title in EXPECTED_EMPTY), (name, title, state)
            if state != "ok":
                continue
            section = f"section.panel[data-panel-id='{[p['id'] for p in d['panels'] if p['title'] == title][0]}']"
            drawn = {"timeseries": "path.series", "heatmap": "rect.cell", "bargauge": ".bar", "stat": ".stat",
                     "table": "td", "text": "pre.text"}[ptype]
            assert page.locator(f"{section} {drawn}").count() > 0, (name, title)
        shots = os.environ.get("EXTRACTGUARD_SCREENSHOTS")  # a directory: keep a picture to look at
        if shots:
            page.set_viewport_size({"width": 1400, "height": 900})
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
        assert errors == [], errors


# -- the metrics behind the assets: switch, cap, batch histogram ---------------------------------
def _small_gateway(tmp_path: Path, **metrics: Any):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from gateway_helpers import iris_target, make_app

    app = make_app(tmp_path, target=iris_target(), metrics=metrics)
    ks = app.state.gateway.keys
    keys = [ks.create(f"acct-{i}", "raw") for i in range(3)]
    client = TestClient(app)
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    for k in keys:
        assert client.post("/v2/models/iris/infer", json=infer_body(rows), headers={"Authorization": f"Bearer {k}"}).status_code == 200
    return client.get("/metrics").text


def test_per_account_series_can_be_switched_off_and_are_capped(tmp_path: Path) -> None:
    off = _small_gateway(tmp_path / "off", per_account=False)
    assert "account=" not in off and "extractguard_rows_served_total" in off
    capped = _small_gateway(tmp_path / "cap", max_accounts=2)
    accounts = set(re.findall(r'extractguard_account_rows_total\{account="([^"]+)"\} (\S+)', capped))
    assert accounts == {("acct-0", "2.0"), ("acct-1", "2.0"), ("_other", "2.0")}
    assert "extractguard_metrics_accounts 2.0" in capped


def test_metrics_config_is_validated() -> None:
    from extractguard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="metrics.max_accounts"):
        parse_config({"model": {"victim": "iris-logreg"}, "metrics": {"max_accounts": 0}})
    with pytest.raises(ConfigurationError, match="metrics.per_acount"):
        parse_config({"model": {"victim": "iris-logreg"}, "metrics": {"per_acount": False}})


def test_batch_histogram_matches_prometheus_client_histogram() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from extractguard.gateway.metrics import CONFIDENCE_BUCKETS, BatchHistogram

    values = np.random.default_rng(0).uniform(0.1, 1.0, size=500)
    values[:5] = [0.5, 0.9, 1.0, 0.2, 0.99]  # exactly on bucket edges: le is inclusive
    ours, ref = CollectorRegistry(), CollectorRegistry()
    BatchHistogram("x_ratio", "doc", ("tier",), CONFIDENCE_BUCKETS, ours).observe_many(("a",), values)
    h = Histogram("x_ratio", "doc", ["tier"], buckets=CONFIDENCE_BUCKETS, registry=ref).labels("a")
    for v in values:
        h.observe(float(v))

    def samples(reg: CollectorRegistry) -> dict[tuple[str, str], float]:
        from prometheus_client.parser import text_string_to_metric_families

        return {(s.name, s.labels.get("le", "")): round(s.value, 9) for f in text_string_to_metric_families(generate_latest(reg).decode())
                for s in f.samples if not s.name.endswith("_created")}

    assert samples(ours) == samples(ref)
