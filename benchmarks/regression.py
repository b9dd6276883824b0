"""Refactor regression set (issue 15): fixed seeded runs whose numbers must not change.

Records what the code produces through its user-facing entry points only (the ``extractguard``
command line as ``python -m extractguard`` subprocesses, and HTTP against ``extractguard serve``),
never internal Python APIs, so the same script runs unchanged before and after the internals are
rewritten.  Four parts:

* ``core``: ``extractguard assess`` on built-in victims: a fidelity ladder (random, knockoff,
  activethief-entropy on digits-mlp) under four output modes, plus three exact attacks;
* ``matrix``: ``extractguard assess --config`` on a small assessment matrix (six defenses,
  watermark and detection included) with a ``--fail-if`` gate;
* ``remote``: ``extractguard serve`` with a tier per defense and an ``assess --target`` campaign
  against it over loopback HTTP;
* ``corpus``: a fixed list of valid and malformed inference requests to a freshly served gateway,
  recorded as status code + SHA-256 of the canonical response body.

Only values that must stay identical run-to-run are recorded (no wall or CPU seconds, request
ids, timestamps, ports, paths or API keys).  Every value is a flat ``name -> JSON scalar``.

    python benchmarks/regression.py                                   # writes benchmarks/out/regression.json
    python benchmarks/regression.py --compare benchmarks/regression-baseline.json   # exit 1 on any difference

The code under test is the ``src/`` next to this script (put first on PYTHONPATH of every
subprocess); victims are trained afresh into a temporary cache, so their training is covered too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PARTS = ("core", "matrix", "remote", "corpus")
AUTH = {"statement": "We own the digits-logreg model served by this local gateway and authorise extraction testing against it.",
        "owner": "ExtractGuard regression set"}

# Report fields that differ run-to-run (times, dates, versions) or are prose, never numbers.
VOLATILE = {"seconds", "query_seconds", "train_seconds", "wall_seconds", "cpu_seconds", "cell_wall_seconds",
            "cell_cpu_seconds", "started_at", "finished_at", "created_at", "tool", "paper", "description", "note",
            "url", "endpoint", "transcript", "transcripts", "path", "out", "report", "jobs", "retry_after_seconds",
            "waited_seconds", "retry_wait_seconds"}

Values = dict[str, Any]


# -- running things ---------------------------------------------------------------------------


class Env:
    """Where one run keeps its files, and the environment of every subprocess."""

    def __init__(self, tmp: Path, verbose: bool) -> None:
        self.tmp = tmp
        self.verbose = verbose
        self.env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1",
                    "PYTHONHASHSEED": "0", "EXTRACTGUARD_CACHE": str(tmp / "cache")}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "extractguard", *args]
        if self.verbose:
            print("  $ extractguard " + KEY_RE.sub("<key>", " ".join(args)), flush=True)
        proc = subprocess.run(cmd, env=self.env, cwd=self.tmp, capture_output=True, text=True, timeout=1200)
        if check and proc.returncode not in (0, 1):
            raise RuntimeError(f"extractguard {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """``extractguard serve --config CFG`` on a free loopback port, stopped on exit."""

    def __init__(self, env: Env, config: Path) -> None:
        self.env, self.config, self.port = env, config, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gateway:
        log = (self.config.parent / "serve.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "extractguard", "serve", "--config", str(self.config),
                                      "--port", str(self.port)], env=self.env.env, cwd=self.env.tmp,
                                     stdout=log, stderr=log)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # waits for the model to load; not a measurement
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: "
                                   + (self.config.parent / "serve.log").read_text()[-2000:])
            try:
                if http("GET", self.url + "/v2/health/live")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gateway did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def write_yaml(path: Path, data: Any) -> Path:
    """JSON is YAML: no yaml dependency needed to write configs."""
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


# -- flattening reports -----------------------------------------------------------------------


def flatten(prefix: str, obj: Any, out: Values) -> None:
    """Every scalar under ``obj`` as ``prefix/a/b``, skipping the volatile fields."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            if k in VOLATILE:
                continue
            flatten(f"{prefix}/{k}", obj[k], out)
    elif isinstance(obj, list):
        if all(not isinstance(x, (dict, list)) for x in obj):
            out[prefix] = json.dumps(obj) if len(obj) <= 16 else "sha256:" + sha(json.dumps(obj).encode())
        else:
            for i, x in enumerate(obj):
                flatten(f"{prefix}/{i}", x, out)
    else:
        out[prefix] = obj


def by(items: list[dict[str, Any]], *keys: str) -> dict[str, dict[str, Any]]:
    """A list of records keyed by their identifying fields, so order never matters.

    Names are keyed with '-' for '_' so that a change of spelling convention (issue 15, item 5)
    keeps the keys: ``reverse_sigmoid`` and ``reverse-sigmoid`` are the same record.
    """
    return {"/".join(str(it.get(k)).replace("_", "-") for k in keys): it for it in items if isinstance(it, dict)}


def flatten_points(prefix: str, points: list[dict[str, Any]], out: Values) -> None:
    for key, p in by(points, "budget").items():
        flatten(f"{prefix}/b{key}", {k: v for k, v in p.items() if k != "budget"}, out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_report(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "report.json").read_text(encoding="utf-8"))


def flatten_assessment(prefix: str, report: dict[str, Any], out: Values) -> None:
    """A single-target ``assess`` (local or ``--target``) report: victim, runs, points, variants."""
    for k, v in report.items():
        if k in ("runs", "variants") or k in VOLATILE:
            continue
        flatten(f"{prefix}/{k}", v, out)
    flatten_runs(f"{prefix}/run", report.get("runs", []), out)
    for i, var in enumerate(report.get("variants", []) or []):
        name = var.get("name", i)
        flatten(f"{prefix}/variant/{name}", {k: v for k, v in var.items() if k != "runs"}, out)
        flatten_runs(f"{prefix}/variant/{name}/run", var.get("runs", []), out)


def flatten_runs(prefix: str, runs: list[dict[str, Any]], out: Values) -> None:
    for name, run in by(runs, "attack").items():
        flatten_points(f"{prefix}/{name}", run.get("points", []), out)
        flatten(f"{prefix}/{name}", {k: v for k, v in run.items() if k not in ("points", "attack")}, out)


# -- part a: the core fidelity ladder ---------------------------------------------------------

LADDER_ATTACKS = ("random", "knockoff", "activethief-entropy")
LADDER_OUTPUTS = ("probabilities", "logits", "top-1", "label")
EXACT_RUNS = (  # (name, victim, attack, budgets, output)
    ("wine-logreg-es", "wine-logreg", "equation-solving", "14,100", "rounded:3"),
    ("breast_cancer-logreg-lm", "breast_cancer-logreg", "lowd-meek", "200,1000", "label"),
    ("wine-tree-pf", "wine-tree", "path-finding", "5000,20000", "probabilities"),
)


def guarded(prefix: str, out: Values, step: Callable[[], None]) -> None:
    """Run one extraction step; a report that cannot be read becomes a recorded error, not a crash."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - any failure is a finding to compare, not a reason to stop
        out[f"{prefix}/error"] = f"{type(exc).__name__}: {exc}"[:300]


def part_core(env: Env) -> Values:
    out: Values = {}
    runs = [(f"digits-mlp/{o}", "digits-mlp", list(LADDER_ATTACKS), "50,200,500", o) for o in LADDER_OUTPUTS]
    runs += [(n, v, [a], b, o) for n, v, a, b, o in EXACT_RUNS]
    for name, victim, attacks, budgets, output in runs:
        d = env.tmp / "core" / name.replace("/", "_")
        args = ["assess", "--victim", victim, "--budgets", budgets, "--output", output, "--seed", "0",
                "--price", "0.001", "--out", str(d)]
        for a in attacks:
            args += ["--attack", a]
        proc = env.cli(*args)
        out[f"core/{name}/exit"] = proc.returncode
        guarded(f"core/{name}", out, lambda: flatten_assessment(f"core/{name}", read_report(d), out))
    return out


# -- part b: one assessment matrix ------------------------------------------------------------

MATRIX = {
    "target": {"victim": "digits-mlp"},
    "attacks": ["random", "knockoff", "activethief"],
    "budgets": [100, 250, 500],
    "surrogate": "auto",
    "defenses": {
        "open": {"description": "full probabilities, no defense"},
        "rounded": {"output": "rounded:1"},
        "top-1": {"output": "label"},
        "reverse-sigmoid": {"defenses": [{"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.2}]},
        "watermark": {"watermark": {"fraction": 0.02}},
        "detect": {"detection": {"baseline_rows_per_hour": 600,
                                 "responses": {"flag": 1.0, "throttle": 2.0, "challenge": 4.0, "suspend": 8.0}}},
    },
    "honest": {"source": "probe", "rows_per_hour": 300},
    "price_per_query": 0.001,
    "attacker_rows_per_second": 10,
    "alpha": 1.0e-6,
    "seed": 0,
    "jobs": 2,
}
GATE = ("fidelity > 0.8 at 500 for defense=open", "honest_utility < 0.99", "detection_queries > 150 for defense=detect")


def part_matrix(env: Env) -> Values:
    out: Values = {}
    d = env.tmp / "matrix"
    d.mkdir(parents=True, exist_ok=True)
    cfg = write_yaml(d / "assess.yaml", MATRIX)
    args = ["assess", "--config", str(cfg), "--out", str(d / "report")]
    for rule in GATE:
        args += ["--fail-if", rule]
    proc = env.cli(*args)
    out["matrix/exit"] = proc.returncode
    fails = sorted(set(re.findall(r"FAIL (attack=\S+ defense=\S+(?: budget=\d+)?)", proc.stdout + proc.stderr)))
    out["matrix/gate/failing"] = json.dumps(fails)
    report = read_report(d / "report")
    for k, v in report.items():
        if k in ("cells", "defenses", "frontier", "config", "target") or k in VOLATILE:
            continue
        flatten(f"matrix/{k}", v, out)
    flatten("matrix/target", report.get("target"), out)
    for name, dfn in (report.get("defenses") or {}).items():
        flatten(f"matrix/defense/{name}", {k: v for k, v in dfn.items() if k != "spec"}, out)
    for key, cell in by(report.get("cells", []), "attack", "defense").items():
        flatten_points(f"matrix/cell/{key}", cell.get("points", []), out)
        flatten(f"matrix/cell/{key}", {k: v for k, v in cell.items() if k not in ("points", "attack", "defense")}, out)
    for key, point in by(report.get("frontier", []), "defense").items():
        flatten(f"matrix/frontier/{key}", {k: v for k, v in point.items() if k != "defense"}, out)
    return out


# -- shared by the HTTP parts -----------------------------------------------------------------


def digits_rows() -> Any:
    """The real 8x8 digits (scikit-learn's bundled copy), as float64 rows of 64 features."""
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def create_key(env: Env, config: Path, account: str, tier: str) -> str:
    proc = env.cli("keys", "create", "--account", account, "--tier", tier, "--config", str(config))
    if proc.returncode != 0:
        raise RuntimeError(f"keys create failed: {proc.stderr}")
    return proc.stdout.strip().splitlines()[-1].strip()


def metric_counters(url: str) -> Values:
    """The gateway's own ``extractguard_*_total`` counters (no durations, no process metrics)."""
    status, body = http("GET", url + "/metrics")
    out: Values = {"status": status}
    for line in body.decode().splitlines():
        m = re.match(r"^(extractguard_[a-z_]+_total)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m and "seconds" not in m.group(1):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


# -- part c: one remote campaign --------------------------------------------------------------

REMOTE_TIERS = {
    "open": {"output": "probabilities"},
    "top-1": {"output": "top-1"},
    "reverse-sigmoid": {"output": "probabilities", "defenses": [{"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.2}]},
    "noise": {"output": "probabilities", "defenses": [{"name": "gaussian_noise", "sigma": 0.2}]},
}


def part_remote(env: Env) -> Values:
    import numpy as np

    out: Values = {}
    d = env.tmp / "remote"
    d.mkdir(parents=True, exist_ok=True)
    X, y = digits_rows()
    np.save(d / "attacker.npy", X[:700])
    np.savez(d / "probe.npz", X=X[1437:1617], y=y[1437:1617])
    (d / "watermark.key").write_text("11" * 32 + "\n")
    gw = write_yaml(d / "gateway.yaml", {
        "model": {"name": "digits-logreg", "victim": "digits-logreg"},
        "state_dir": "state", "watermark_key": "watermark.key", "seed": 0,
        "tiers": REMOTE_TIERS, "ip_limits": ["1000000/minute"], "audit_enabled": True,
    })
    keys = {t: create_key(env, gw, f"redteam-{t}", t) for t in REMOTE_TIERS}
    with Gateway(env, gw) as g:
        target = write_yaml(d / "target.yaml", {
            "url": g.url, "protocol": "oip", "model": "digits-logreg",
            "schema": {"input_shape": [1, 8, 8], "n_classes": 10, "low": 0, "high": 16},
            "output": "probabilities", "concurrency": 1, "max_rows_per_request": 32, "backoff": 0.05,
            "price_per_query": 0.001, "budget": 300, "spend_cap": 100.0,
            "transcript": "campaign.sqlite", "attacker_data": "attacker.npy", "probe_data": "probe.npz",
            "variants": [{"name": t, "keys": [keys[t]], **({"output": c["output"]} if c["output"] != "probabilities" else {})}
                         for t, c in REMOTE_TIERS.items()],
            "authorization": AUTH,
        })
        proc = env.cli("assess", "--target", str(target), "--attack", "random", "--attack", "knockoff",
                       "--budgets", "50,150,300", "--surrogate", "auto", "--seed", "0", "--out", str(d / "report"))
        out["remote/exit"] = proc.returncode
        flatten_assessment("remote", read_report(d / "report"), out)
        for k, v in metric_counters(g.url).items():
            out[f"remote/metrics/{k}"] = v
    out["remote/audit_verify_exit"] = env.cli("audit", "verify", "--config", str(gw)).returncode
    return out


# -- part d: the gateway test corpus ----------------------------------------------------------

CORPUS_TIERS = {
    "open": {"output": "probabilities"},
    "logits": {"output": "logits"},
    "rounded": {"output": "rounded:1"},
    "top-3": {"output": "top-3"},
    "label": {"output": "label", "max_rows_per_request": 4},
    "temperature": {"output": "top-3", "defenses": [{"name": "temperature", "temperature": 2.0}]},
    "noise": {"output": "probabilities", "defenses": [{"name": "gaussian_noise", "sigma": 0.2}]},
    "reverse-sigmoid": {"output": "probabilities", "defenses": [{"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.2}]},
    "mad": {"output": "probabilities", "defenses": [{"name": "mad", "epsilon": 1.0, "argmax": True}]},
    "misinformation": {"output": "probabilities", "defenses": [{"name": "adaptive_misinformation", "tau": 0.9, "nu": 100}]},
    "watermark": {"output": "probabilities", "watermark": {"fraction": 0.2}},
    "watermark-cells": {"output": "top-3", "watermark": {"fraction": 0.2, "cell_width": 0.3, "mark": "soft"}},
    "watermark-label": {"output": "label", "defenses": [{"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.2}],
                        "watermark": {"fraction": 0.2}},
    "detect": {"output": "probabilities", "detection": {"responses": {"flag": 1.0, "suspend": 2.0}}},
    "small": {"output": "probabilities", "limits": ["10/hour"]},
    "other-model": {"output": "probabilities", "models": ["not-this-one"]},
}
KEY_RE = re.compile(r"eg_[0-9a-f]+_[A-Za-z0-9_-]+|\b[0-9a-f]{16}\b")
RETRY_RE = re.compile(r"retry after \d+ s")


def oip(rows: Any, datatype: str = "FP32", shape: list[int] | None = None) -> bytes:
    import numpy as np

    a = np.asarray(rows, dtype=np.float64)
    data = [float(v) for v in a.ravel()]
    return json.dumps({"inputs": [{"name": "input", "shape": shape or [int(a.shape[0]), int(a[0].size)],
                                   "datatype": datatype, "data": data}]}).encode()


def raw(data: list[Any], datatype: str = "FP32") -> bytes:
    """One row given value by value (NaN and Infinity written as JSON's non-standard literals)."""
    return json.dumps({"inputs": [{"name": "input", "shape": [1, len(data)], "datatype": datatype, "data": data}]}).encode()


def canonical(body: bytes) -> tuple[bytes, str | None]:
    """The body without per-request fields; the error text of a refusal (key ids masked)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body, None
    if isinstance(doc, dict):
        for k in ("id", "request_id", "timestamp", "ts"):
            doc.pop(k, None)
        err = doc.get("error") if isinstance(doc.get("error"), str) else None
        if err is not None:
            err = RETRY_RE.sub("retry after <s> s", KEY_RE.sub("<key>", err))  # the wait counts down in real time
            doc["error"] = err
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), err
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), None


def part_corpus(env: Env) -> Values:
    import numpy as np

    out: Values = {}
    d = env.tmp / "corpus"
    d.mkdir(parents=True, exist_ok=True)
    (d / "watermark.key").write_text("22" * 32 + "\n")
    gw = write_yaml(d / "gateway.yaml", {
        "model": {"name": "digits-logreg", "victim": "digits-logreg"},
        "state_dir": "state", "watermark_key": "watermark.key", "seed": 0,
        "tiers": CORPUS_TIERS, "ip_limits": ["1000000/minute"], "audit_enabled": True,
        "max_rows_per_request": 64, "max_body_bytes": 200000,
    })
    accounts = {t: t for t in CORPUS_TIERS}
    keys = {t: create_key(env, gw, f"acct-{t}", t) for t in accounts}
    keys["watermark-b"] = create_key(env, gw, "acct-watermark-b", "watermark")
    keys["revoked"] = create_key(env, gw, "acct-revoked", "open")
    revoke = env.cli("keys", "revoke", keys["revoked"], "--config", str(gw))
    out["corpus/keys_revoke_exit"] = revoke.returncode

    X, _ = digits_rows()
    rng = np.random.RandomState(0)
    noise = rng.uniform(0, 16, size=(400, 64)).round(4)
    nat8, nat32 = X[1000:1008], X[1100:1132]
    requests: list[tuple[str, str, str, bytes | None, dict[str, str]]] = []  # name, method, path, body, headers
    infer = "/v2/models/digits-logreg/infer"

    def bearer(key_name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[key_name]}", "Content-Type": "application/json"}

    # valid answers, every tier
    for tier in CORPUS_TIERS:
        if tier in ("detect", "small", "other-model"):
            continue
        rows = nat8[:4] if tier == "label" or tier == "watermark-label" else nat8
        requests.append((f"{tier}/natural", "POST", infer, oip(rows), bearer(tier)))
        requests.append((f"{tier}/noise-1row", "POST", infer, oip(noise[:1], "FP64"), bearer(tier)))
    for tier in ("watermark", "watermark-cells"):
        requests.append((f"{tier}/natural32", "POST", infer, oip(nat32), bearer(tier)))
    requests.append(("watermark/natural32-second-account", "POST", infer, oip(nat32), bearer("watermark-b")))
    requests.append(("watermark/natural32-repeat", "POST", infer, oip(nat32), bearer("watermark")))
    requests.append(("noise/natural-repeat", "POST", infer, oip(nat8), bearer("noise")))
    requests.append(("open/x-api-key", "POST", infer, oip(nat8[:2]), {"X-API-Key": keys["open"]}))
    requests.append(("open/shape-1x8x8", "POST", infer, oip(nat8[:2], shape=[2, 1, 8, 8]), bearer("open")))
    requests.append(("open/64-rows", "POST", infer, oip(X[:64]), bearer("open")))
    requests.append(("open/fp64-extremes", "POST", infer, oip(np.vstack([np.zeros(64), np.full(64, 16.0), np.full(64, 1e6)]), "FP64"), bearer("open")))
    requests.append(("open/int-data", "POST", infer,
                     json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "INT32",
                                             "data": [int(v) for v in X[5]]}]}).encode(), bearer("open")))
    # metadata and health
    requests.append(("meta/live", "GET", "/v2/health/live", None, {}))
    requests.append(("meta/ready", "GET", "/v2/health/ready", None, {}))
    requests.append(("meta/model", "GET", "/v2/models/digits-logreg", None, bearer("open")))
    requests.append(("meta/model-ready", "GET", "/v2/models/digits-logreg/ready", None, bearer("open")))
    requests.append(("meta/model-no-key", "GET", "/v2/models/digits-logreg", None, {}))
    # refusals
    good = oip(nat8[:2])
    requests += [
        ("bad/no-key", "POST", infer, good, {"Content-Type": "application/json"}),
        ("bad/unknown-key", "POST", infer, good, {"Authorization": "Bearer eg_0123456789abcdef_notAValidSecretAtAll0000000000000000000"}),
        ("bad/malformed-key", "POST", infer, good, {"Authorization": "Bearer hello"}),
        ("bad/basic-auth", "POST", infer, good, {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("bad/revoked-key", "POST", infer, good, bearer("revoked")),
        ("bad/wrong-model", "POST", "/v2/models/mnist/infer", good, bearer("open")),
        ("bad/tier-not-allowed-model", "POST", infer, good, bearer("other-model")),
        ("bad/json", "POST", infer, b"{bad", bearer("open")),
        ("bad/empty-body", "POST", infer, b"", bearer("open")),
        ("bad/json-list", "POST", infer, b"[1, 2, 3]", bearer("open")),
        ("bad/no-inputs", "POST", infer, b'{"outputs": []}', bearer("open")),
        ("bad/empty-inputs", "POST", infer, b'{"inputs": []}', bearer("open")),
        ("bad/63-features", "POST", infer, oip(nat8[:2, :63]), bearer("open")),
        ("bad/shape-mismatch", "POST", infer, oip(nat8[:2], shape=[3, 64]), bearer("open")),
        ("bad/negative-shape", "POST", infer, oip(nat8[:1], shape=[-1, 64]), bearer("open")),
        ("bad/nan", "POST", infer, raw([float("nan")] + [1.0] * 63), bearer("open")),
        ("bad/infinity", "POST", infer, raw([1.0] * 63 + [float("inf")]), bearer("open")),
        ("bad/string-data", "POST", infer, raw(["x"] + [1.0] * 63), bearer("open")),
        ("bad/bool-datatype", "POST", infer, oip(nat8[:1], "BOOL"), bearer("open")),
        ("bad/bytes-datatype", "POST", infer, oip(nat8[:1], "BYTES"), bearer("open")),
        ("bad/nested-data", "POST", infer,
         json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [[1.0] * 64]}]}).encode(), bearer("open")),
        ("bad/too-many-rows-global", "POST", infer, oip(X[:65]), bearer("open")),
        ("bad/too-many-rows-tier", "POST", infer, oip(nat8[:5]), bearer("label")),
        ("bad/body-too-large", "POST", infer, good[:-1] + b" " * 210000 + b"}", bearer("open")),
        ("bad/invalid-utf8", "POST", infer, b'{"inputs": "\xff\xfe"}', bearer("open")),
        ("limits/small-11-rows", "POST", infer, oip(noise[:11]), bearer("small")),
        ("limits/small-6-rows", "POST", infer, oip(noise[:6]), bearer("small")),
        ("limits/small-6-rows-again", "POST", infer, oip(noise[6:12]), bearer("small")),
    ]
    # detection: off-task noise in batches until the account is suspended
    for i in range(12):
        requests.append((f"detect/noise-{i:02d}", "POST", infer, oip(noise[100 + 25 * i:125 + 25 * i]), bearer("detect")))
    requests.append(("detect/natural-after", "POST", infer, oip(nat8), bearer("detect")))

    with Gateway(env, gw) as g:
        for name, method, path, body, headers in requests:
            status, resp = http(method, g.url + path, body, headers)
            canon, err = canonical(resp)
            out[f"corpus/{name}/status"] = status
            out[f"corpus/{name}/sha256"] = sha(canon)
            if err is not None:
                out[f"corpus/{name}/error"] = err
        for k, v in metric_counters(g.url).items():
            out[f"corpus/metrics/{k}"] = v
    out["corpus/audit_verify_exit"] = env.cli("audit", "verify", "--config", str(gw)).returncode
    return out


# -- driver -----------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Env], Values]] = {"core": part_core, "matrix": part_matrix, "remote": part_remote,
                                               "corpus": part_corpus}


def compare(current: Values, baseline: Values) -> tuple[list[str], list[str]]:
    """(differences, renames).  A rename is a report field that moved to a new name next to it
    (same parent, same value, the only candidate): the number is unchanged, only the report's
    spelling, so it is listed but is not a difference."""
    same = lambda a, b: json.dumps(a) == json.dumps(b)  # noqa: E731
    missing = sorted(k for k in baseline if k not in current)
    new = sorted(k for k in current if k not in baseline)
    renames: list[str] = []
    for k in list(missing):
        parent = k.rsplit("/", 1)[0]
        cands = [n for n in new if n.rsplit("/", 1)[0] == parent and same(current[n], baseline[k])]
        if len(cands) == 1:
            renames.append(f"renamed  {k} -> {cands[0]}  (same value {baseline[k]!r})")
            missing.remove(k)
            new.remove(cands[0])
    lines = [f"missing  {k}  (baseline {baseline[k]!r})" for k in missing]
    lines += [f"new      {k}  = {current[k]!r}" for k in new]
    lines += [f"differs  {k}  baseline {baseline[k]!r}  now {current[k]!r}"
              for k in sorted(set(current) & set(baseline)) if not same(current[k], baseline[k])]
    return sorted(lines, key=lambda line: line.split()[1]), renames


def summary(values: Values) -> None:
    """Compact tables of the headline numbers; the JSON holds every recorded value."""

    def cell(k: str) -> str:
        v = values.get(k)
        return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))

    def table(title: str, rows: list[str], cols: list[str], key: Callable[[str, str], str]) -> None:
        w = max([len(r) for r in rows] + [len(title)])
        print(f"{title:<{w}}  " + "  ".join(f"{c:>10}" for c in cols))
        for r in rows:
            print(f"{r:<{w}}  " + "  ".join(f"{cell(key(r, c)):>10}" for c in cols))
        print()

    core = sorted({m.group(1) + "|" + m.group(2) for k in values
                   if (m := re.match(r"^core/(.+)/run/([^/]+)/b\d+/fidelity$", k))})
    if core:
        table("core: fidelity at budget", core, ["b14", "b50", "b100", "b200", "b500", "b1000", "b5000"],
              lambda r, c: "core/{}/run/{}/{}/fidelity".format(*r.split("|"), c))
    cells = sorted({m.group(1) for k in values if (m := re.match(r"^matrix/cell/([^/]+/[^/]+)/b500/fidelity$", k))})
    if cells:
        table("matrix cell (attack/defense)", cells, ["fid@500", "enforced", "wm p@500", "1st flag"],
              lambda r, c: {"fid@500": f"matrix/cell/{r}/b500/fidelity", "enforced": f"matrix/cell/{r}/enforced/fidelity",
                            "wm p@500": f"matrix/cell/{r}/b500/watermark_p",
                            "1st flag": f"matrix/cell/{r}/detection/first_flag"}[c])
    runs = sorted({m.group(1) for k in values if (m := re.match(r"^remote/variant/([^/]+/run/[^/]+)/b300/fidelity$", k))})
    if runs:
        table("remote variant/run/attack", runs, ["b50", "b150", "b300"], lambda r, c: f"remote/variant/{r}/{c}/fidelity")
    statuses: dict[str, int] = {}
    for k, v in values.items():
        if k.startswith("corpus/") and k.endswith("/status") and not k.startswith("corpus/metrics/"):
            statuses[str(v)] = statuses.get(str(v), 0) + 1
    if statuses:
        print("corpus: responses by status " + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items())))
    counts: dict[str, int] = {}
    for k in values:
        counts[k.split("/")[0]] = counts.get(k.split("/")[0], 0) + 1
    print("recorded values: " + ", ".join(f"{p} {n}" for p, n in counts.items()) + f"; total {len(values)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "regression.json"))
    ap.add_argument("--compare", metavar="FILE", help="re-run and print every value that differs from FILE (exit 1 if any)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (reports, logs)")
    ap.add_argument("--quiet", action="store_true", help="do not echo the commands")
    args = ap.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in RUNNERS]
    if bad:
        print(f"error: unknown part(s) {bad}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    baseline: dict[str, Any] | None = None
    if args.compare:
        baseline = json.loads(Path(args.compare).read_text(encoding="utf-8"))

    tmp = Path(tempfile.mkdtemp(prefix="eg-regression-"))
    values: Values = {}
    walls: dict[str, float] = {}
    t_all = time.perf_counter()
    try:
        env = Env(tmp, verbose=not args.quiet)
        for p in parts:
            t0 = time.perf_counter()
            print(f"[{p}]", flush=True)
            part_values: Values = {}
            try:
                part_values = RUNNERS[p](env)
            except Exception as exc:  # noqa: BLE001 - record it and go on with the other parts
                part_values[f"{p}/error"] = f"{type(exc).__name__}: {exc}"[:300]
                print(f"[{p}] failed: {exc}", flush=True)
            walls[p] = round(time.perf_counter() - t0, 1)
            print(f"[{p}] {len(part_values)} values in {walls[p]:.0f} s", flush=True)
            values.update(part_values)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = round(time.perf_counter() - t_all, 1)

    doc = {"parts": parts, "counts": {p: sum(1 for k in values if k.split("/")[0] == p) for p in parts},
           "values": dict(sorted(values.items())),
           "not_compared": {"wall_seconds": walls, "total_wall_seconds": total,
                            "python": sys.version.split()[0]}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    summary(values)
    print(f"wrote {out} in {total:.0f} s")
    if baseline is None:
        return 0
    base_values = {k: v for k, v in baseline["values"].items() if k.split("/")[0] in parts}
    diffs, renames = compare(values, base_values)
    for line in renames + diffs:
        print(line)
    if diffs:
        print(f"{len(diffs)} of {len(set(values) | set(base_values))} values differ from {args.compare}")
        return 1
    extra = f" ({len(renames)} of them under a renamed report field, listed above)" if renames else ""
    print(f"identical: {len(base_values)} values{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
