"""The REST port's own description: the OpenAPI document
(``/v2/openapi.json``, built by ``_openapi``) and a Swagger UI page over
it (``/docs``).

The page's scripts and style sheets are the ``swagger-ui-bundle``
package's files, served from the installed package: nothing is fetched
from elsewhere, at run time or in the browser. Only the files the page
uses are served, by name, so no path can reach another file.
"""

from __future__ import annotations

import functools

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from swagger_ui_bundle import swagger_ui_path

from meshserve.server._openapi import OPENAPI_PATH, openapi_document
from meshserve.server._rest_errors import error_response, reports_errors

__all__ = ["DOCS_PATH", "docs_routes"]

DOCS_PATH = "/docs"

# Name -> media type of the bundle's files the page loads.
_ASSETS = {
    "swagger-ui.css": "text/css",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_INITIALIZER = "swagger-initializer.js"

# Relative links, so that the page works behind a proxy's path prefix too
# (from /docs, "docs/x" is /docs/x and "v2/openapi.json" the document).
_PAGE = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>meshserve REST API</title>
    <link rel="stylesheet" type="text/css" href="docs/swagger-ui.css">
    <link rel="stylesheet" type="text/css" href="docs/index.css">
    <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
    <link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="docs/{_INITIALIZER}" charset="UTF-8"></script>
  </body>
</html>
"""

_INITIALIZER_JS = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH.lstrip("/")}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  }});
}};
"""


@functools.cache
def _asset(name: str) -> bytes:
    # A handful of files read once: the bundle's script is ~1 MB.
    data: bytes = (swagger_ui_path / name).read_bytes()
    return data


@functools.cache
def _document() -> bytes:
    return orjson.dumps(openapi_document())


async def _openapi(request: Request) -> Response:
    return Response(_document(), media_type="application/json")


async def _page(request: Request) -> Response:
    return HTMLResponse(_PAGE)


async def _file(request: Request) -> Response:
    name = request.path_params["asset"]
    if name == _INITIALIZER:
        return Response(_INITIALIZER_JS, media_type="text/javascript")
    media_type = _ASSETS.get(name)
    if media_type is None:
        return error_response(404, f"no file {name!r} in the docs page")
    return Response(_asset(name), media_type=media_type)


def docs_routes() -> list[Route]:
    """The document's route and the page's."""
    return [
        Route(OPENAPI_PATH, reports_errors(_openapi), methods=["GET"]),
        Route(DOCS_PATH, reports_errors(_page), methods=["GET"]),
        Route(DOCS_PATH + "/{asset}", reports_errors(_file), methods=["GET"]),
    ]
