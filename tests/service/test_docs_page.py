"""``/docs`` in headless Chromium: Swagger UI reads the service's OpenAPI 3.1 document and
renders every operation (Swagger UI 4.x showed "Unable to render this definition")."""

from __future__ import annotations

import re

from tests.service.test_map_page import chromium, pytestmark  # noqa: F401  (skip rule)


def test_docs_render_every_operation(server, client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    dom = chromium("--dump-dom", f"{server.base_url}/docs").stdout
    assert "Unable to render this definition" not in dom
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert rendered == set(spec["paths"]), dom[-2000:]
    assert 'class="opblock opblock-post' in dom and 'class="opblock opblock-get' in dom
