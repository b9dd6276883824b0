"""Locust users for benchmarks/gateway_load.py (not run on its own).

Half the users talk to replica A, half to replica B (two user classes of equal weight).  Every
request picks one of the run's API keys at random (so every key is spent through both replicas
at once) and a batch of 1-8 rows.  Every answer is recorded: its status, and for a 200 the
``X-Request-ID`` with the key and rows it was charged, so the driver can check each acknowledged
answer against the audit log.  Results go to the JSON file named by ``EG_LOAD_OUT`` when the run
stops.

Configuration comes from the environment (``EG_LOAD_CONFIG``: a JSON file with ``replicas``,
``keys``, ``model`` and ``n_features``), since locust owns the command line.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from typing import Any

from locust import FastHttpUser, events, task

_CFG: dict[str, Any] = json.loads(open(os.environ["EG_LOAD_CONFIG"]).read())
_BATCHES = (1, 1, 2, 3, 5, 8)
_WAIT = float(os.environ.get("EG_LOAD_WAIT", "0.05"))
_acked: list[list[Any]] = []  # [request_id, key_id, rows, replica]
_statuses: Counter[str] = Counter()
_errors: list[dict[str, Any]] = []  # every 5xx body and transport error, capped
_latency_ms: list[float] = []
_unavailable: Counter[str] = Counter()  # 503 messages: must all say the rate-limit storage is down
_seq = iter(range(10**9))


class _GatewayUser(FastHttpUser):
    abstract = True
    max_retries = 0  # a retried POST would be a second request; count what the client saw
    network_timeout = 60.0
    connection_timeout = 10.0
    replica = ""

    def on_start(self) -> None:
        self.rng = random.Random(next(_seq))
        self.path = f"/v2/models/{_CFG['model']}/infer"

    wait_extra = 0.0

    def wait_time(self) -> float:
        """Uniform(0, EG_LOAD_WAIT) between requests, plus a back-off after a transport error."""
        extra, self.wait_extra = self.wait_extra, 0.0
        return extra + self.rng.uniform(0.0, _WAIT)

    @task
    def infer(self) -> None:
        key = self.rng.choice(_CFG["keys"])
        rows = self.rng.choice(_BATCHES)
        data = [round(self.rng.uniform(_CFG["low"], _CFG["high"]), 4) for _ in range(rows * _CFG["n_features"])]
        body = {"inputs": [{"name": "input", "shape": [rows, _CFG["n_features"]], "datatype": "FP64", "data": data}]}
        with self.client.post(self.path, json=body, headers={"Authorization": f"Bearer {key}"}, catch_response=True) as r:
            status = int(r.status_code or 0)
            _statuses[str(status)] += 1
            if status and r.request_meta.get("response_time") is not None:  # answered requests only
                _latency_ms.append(float(r.request_meta["response_time"]))
            if status == 200:
                _acked.append([r.headers.get("x-request-id"), key.split("_")[1], rows, self.replica])
                r.success()
            elif status == 503:  # fail_closed while Redis is down: the configured policy, not a failure
                try:
                    _unavailable[str(r.json().get("error", ""))[:60] + f" | Retry-After={r.headers.get('retry-after')}"] += 1
                except ValueError:
                    _unavailable["(not JSON) " + (r.text or "")[:60]] += 1
                r.success()
            elif status in (400, 401, 403, 404, 413) or status >= 500 or status == 0:
                if status == 0:  # the replica is down: back off as a real client would
                    self.wait_extra = 0.2
                if len(_errors) < 200:
                    _errors.append({"status": status, "replica": self.replica, "body": (r.text or "")[:300],
                                    "error": repr(r.error) if r.error else None})
                r.failure(f"status {status}")
            else:  # 429: a limit, the gateway doing its job
                r.success()


class ReplicaA(_GatewayUser):
    host = _CFG["replicas"][0]
    replica = "A"


class ReplicaB(_GatewayUser):
    host = _CFG["replicas"][1]
    replica = "B"


@events.test_stop.add_listener
def _write(**_: Any) -> None:
    with open(os.environ["EG_LOAD_OUT"], "w") as fh:
        json.dump({"statuses": dict(_statuses), "acked": _acked, "errors": _errors, "latency_ms": _latency_ms,
                   "unavailable": dict(_unavailable)}, fh)
