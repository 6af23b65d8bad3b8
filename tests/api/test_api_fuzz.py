"""Property-based fuzzing of every operation in the API's own OpenAPI schema (schemathesis).

The schema is built from the app's routes at collection time (``openapi_schema()``, no
services), so each operation is its own test and new endpoints are covered automatically;
a separate test checks the running server publishes exactly that schema. Requests go to the
real uvicorn server on 127.0.0.1 with the admin key, so authenticated and admin-only paths
are exercised, bounded in examples per operation. Asserts no 5xx and that every response
(status, content type, headers, body) matches what the schema declares.

(``schemathesis.pytest.from_fixture`` would load the schema from the live server instead,
but schemathesis 4.32 uses a node attribute pytest 9 removed: ``_nodeid``.)
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gaiverse.api.app import openapi_schema

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(openapi_schema())
schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])


def test_the_server_publishes_the_fuzzed_schema(api_server):
    assert httpx.get(f"{api_server}/openapi.json", timeout=30).json() == openapi_schema()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors_and_no_schema_violations(case, api_server, admin_key, served_flow):
    assert api_server.startswith("http://127.0.0.1:")  # loopback only
    headers = {"Authorization": f"Bearer {admin_key}"}
    response = case.call(base_url=api_server, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=headers,
                           transport_kwargs={"base_url": api_server})
