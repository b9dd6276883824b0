"""Property-based fuzzing of the live gateway from its own OpenAPI document (schemathesis).

Every operation gets schema-valid (positive) and schema-violating (negative) requests with a
valid API key, against a real uvicorn server; schemathesis checks that no answer is a 5xx, that
every status code, content type, header and body is the one the document declares, that
schema-violating input is refused with a 4xx, and that operations declaring security refuse a
request without the key.

``positive_data_acceptance`` is left out on purpose: a schema-valid body can still be refused by
the gateway for reasons JSON Schema cannot express (``data`` must hold prod(shape) numbers, the
row width must match the model), and those refusals are 400s the document declares.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (hypothesis comes with schemathesis)
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from gateway_helpers import UvicornThread, make_app  # noqa: E402

#: Examples per operation and mode; raise it for a longer hunt (EXTRACTGUARD_FUZZ_EXAMPLES=500).
EXAMPLES = int(os.environ.get("EXTRACTGUARD_FUZZ_EXAMPLES", "30"))

@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # No per-key limits on the fuzzed tier: a 429 would hide what the body did.
    app = make_app(tmp_path_factory.mktemp("fuzz"), tiers={"raw": {"output": "probabilities"}})
    key = app.state.gateway.keys.create("fuzzer", "raw")
    with UvicornThread(app) as srv:
        yield {"app": app, "url": srv.url, "key": key}


def _operations(app: Any) -> list[Any]:
    from schemathesis.config._checks import NegativeDataRejectionConfig

    schema = schemathesis.openapi.from_dict(app.openapi())
    # 413 is the right refusal of an invalid body that is also longer than max_body_bytes (checked
    # before parsing); schemathesis' default list of rejection codes does not include it.
    schema.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=["400", "401", "403", "404", "413", "428", "429"])
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_gateway_conforms_to_its_openapi_document(live_gateway: dict[str, Any], mode: GenerationMode) -> None:
    """Run schemathesis' generated cases for every operation through all its default checks.

    The strategies come from schemathesis and run under Hypothesis directly (derandomised, a
    bounded number of examples): schemathesis' lazy pytest loader does not work with this pytest.
    """
    url, headers = live_gateway["url"], {"Authorization": f"Bearer {live_gateway['key']}"}
    operations = _operations(live_gateway["app"])
    assert len(operations) == 7
    seen: dict[str, set[int]] = {}
    for op in operations:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            response = case.call_and_validate(base_url=url, headers=headers, excluded_checks=[positive_data_acceptance], timeout=30)
            seen.setdefault(op.label, set()).add(response.status_code)

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation without parameters or body has nothing to break
            assert mode is GenerationMode.NEGATIVE and "{model}" not in op.label, op.label
    assert all(code < 500 for codes in seen.values() for code in codes), seen
    infer = seen["POST /v2/models/{model}/infer"]
    if mode is GenerationMode.POSITIVE:  # schema-valid bodies got past JSON parsing into the tensor checks
        assert 400 in infer, seen
    else:
        assert infer <= {400, 404, 413}, seen


def test_the_document_names_every_refusal_of_infer(live_gateway: dict[str, Any]) -> None:
    doc = live_gateway["app"].openapi()
    op = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert set(op["responses"]) == {"200", "400", "401", "403", "404", "413", "428", "429", "500", "502", "503"}
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InferenceRequest"}
    assert op["security"] == [{"bearer": []}, {"apiKey": []}]
    for path, ops in doc["paths"].items():
        for method in ops.values():
            assert ("security" in method) == (path not in {"/v2/health/live", "/v2/health/ready", "/metrics"}), path


def test_openapi_document_is_served_only_with_a_key(live_gateway: dict[str, Any]) -> None:
    import httpx

    url = live_gateway["url"] + "/openapi.json"
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, headers={"X-API-Key": live_gateway["key"]})
    assert r.status_code == 200 and "/v2/models/{model}/infer" in r.json()["paths"]


def test_docs_pages_are_not_served(live_gateway: dict[str, Any]) -> None:
    import httpx

    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(live_gateway["url"] + path, headers={"X-API-Key": live_gateway["key"]}).status_code == 404

