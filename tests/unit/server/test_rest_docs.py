"""The REST port's OpenAPI document and its Swagger UI page: the document
is valid OpenAPI 3 and lists exactly the routes the app serves; the page
and every file it links are served from the vendored bundle."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import BaseRoute, Mount, Route

from meshserve._clock import SystemClock
from meshserve.controller import ResourceStore
from meshserve.server._openapi import OPENAPI_PATH, openapi_document
from meshserve.server._rest import create_rest_app
from meshserve.server._status_page import status_routes
from meshserve.store import SqliteStore
from tests.unit.server.test_rest import FakeBackend, _ServerThread

_METHODS = {"get", "post", "put", "patch", "delete"}


def _served_routes(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path template) of every route, Mounts walked."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= _served_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":  # Starlette adds HEAD to every GET
                    found.add((method.lower(), prefix + route.path))
    return found


def _documented(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(method, path) for path, item in paths.items() for method in item if method in _METHODS}


def test_the_document_is_valid_openapi() -> None:
    validate(openapi_document())


async def test_the_document_lists_exactly_the_routes_served(tmp_path: pathlib.Path) -> None:
    async with SqliteStore.open(tmp_path / "store.db") as store:
        # With the status page's routes, as the front ends serve them.
        status = status_routes(
            FakeBackend(), ResourceStore(store), rows=5, refresh_s=5, clock=SystemClock()
        )
    app = create_rest_app(backend=FakeBackend(), extra_routes=status)
    served = _served_routes(app.routes)
    documented = _documented(openapi_document())
    assert served - documented == set(), "served, not in the OpenAPI document"
    assert documented - served == set(), "in the OpenAPI document, not served"


def test_every_path_parameter_is_declared() -> None:
    for path, item in openapi_document()["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert declared == names, (method, path)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with (
        _ServerThread(FakeBackend()) as address,
        httpx.Client(base_url=f"http://{address}", timeout=10) as client,
    ):
        yield client


def test_the_document_is_served(http: httpx.Client) -> None:
    response = http.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi_document()


def test_the_swagger_page_and_every_file_it_links_are_served(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    links = re.findall(r'(?:href|src)="([^"]+)"', page.text)
    assert links, page.text
    assert all(not link.startswith(("http:", "https:", "//")) for link in links), links
    for link in links:
        # Relative to the page at /docs: "docs/x" is /docs/x.
        response = http.get("/" + link)
        assert response.status_code == 200, link
        assert len(response.content) > 0, link
    types = {link.rsplit(".", 1)[1]: http.get("/" + link).headers["content-type"] for link in links}
    assert types["css"].startswith("text/css")
    assert types["js"].startswith("text/javascript")
    bundle = http.get("/docs/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    initializer = http.get("/docs/swagger-initializer.js").text
    # The page reads this instance's document, by a relative URL.
    assert f'url: "{OPENAPI_PATH.lstrip("/")}"' in initializer


@pytest.mark.parametrize("name", ["../../etc/passwd", "index.html", "swagger-ui.js.map", "x"])
def test_only_the_pages_files_are_served(http: httpx.Client, name: str) -> None:
    response = http.get(f"/docs/{name}")
    assert response.status_code == 404
