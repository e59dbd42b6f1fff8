"""Property-based fuzzing of the OpenAPI schema against the real server: no 5xx, and every
response (errors included) matches its declared status code, content type and schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REPO

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]




def _openapi() -> dict:
    """The schema the server publishes (it does not depend on the graph, so any directory
    satisfies Settings here; building the app loads nothing). Loaded at collection time:
    schemathesis' fixture loader does not work with pytest 9."""
    from service.app import create_app
    from service.config import Settings

    return create_app(Settings(graph_dir=REPO)).openapi()


schema = schemathesis.openapi.from_dict(_openapi())
# Valid and invalid inputs alike: invalid ones must be rejected with a declared 4xx.
schema.config.generation.modes = list(schemathesis.GenerationMode)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case, server):
    case.call_and_validate(base_url=server.base_url, checks=CHECKS)
