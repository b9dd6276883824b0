"""Smoke test for benchmarks/detection.py: a tiny run writes the three tables' data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from checkout import ROOT

BENCH = ROOT / "benchmarks" / "detection.py"


def test_detection_benchmark_runs_end_to_end(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_detection", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "d.json"
    monkeypatch.setattr(sys, "argv", ["detection.py", "--victim", "digits-logreg", "--attacks", "random,knockoff,lowd-meek",
                                      "--budget", "300", "--benign-accounts", "2", "--benign-queries", "400",
                                      "--stored", "300,1500", "--reps", "20", "--out", str(out)])
    module.main()
    res = json.loads(out.read_text())
    rows = {r["attack"]: r for r in res["attacks"]}
    assert rows["random"]["queries"] == 300 and rows["random"]["content"] is not None and rows["random"]["content"] <= 300
    assert rows["knockoff"]["rate"] == 100  # one 100-row request at machine speed
    assert rows["lowd-meek"]["queries"] == 0 and "binary" in rows["lowd-meek"]["refused"]
    assert len(res["benign"]) == 2 and set(res["false_positives"]) == {"prada", "content", "rate", "combined"}
    assert [c["state_bytes"] for c in res["cost"]][0] == res["cost"][1]["state_bytes"]
    assert (tmp_path / "detection_transcripts").is_dir()  # transcripts cached next to the output
