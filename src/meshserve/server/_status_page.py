"""The status page on the REST port: ``GET /status`` and ``GET /status.json``.

- ``/status`` is a static page (plain HTML and CSS, a little vanilla
  JavaScript) holding no data: it is open, like the health routes, so a
  browser can load it without a credential.
- ``/status.json`` is the snapshot the page polls
  (:class:`StatusSnapshot`), behind the same auth as the management API:
  with ``auth.enabled`` it needs the ``read`` role, and shows only the
  models and InferenceServices of the namespaces the caller may see. The
  page sends ``Authorization: Bearer <token>`` with the token given in its
  form (or in the URL fragment, ``/status#token=...``, which browsers never
  send to the server), kept in the tab's session storage.

The page puts the snapshot's text into the document with ``textContent``
only, and is served with a Content Security Policy that allows its own
inline script and style (by hash) and fetches to the same origin, nothing
else: a model id like ``<script>`` shows as text and could not run if it
got in.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from meshserve._clock import Clock
from meshserve.controller import ResourceStore
from meshserve.server._rest_errors import reports_errors
from meshserve.server._status_snapshot import StatusSource, build_snapshot

__all__ = ["STATUS_JSON_PATH", "STATUS_PAGE_PATH", "status_routes"]

STATUS_PAGE_PATH = "/status"
STATUS_JSON_PATH = "/status.json"


def _page() -> tuple[bytes, str]:
    """The page, and its Content Security Policy (hashes of its inline
    script and style)."""
    text = (importlib.resources.files("meshserve.server") / "status_page.html").read_text()

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
            for b in blocks
        )

    policy = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return text.encode(), policy


def status_routes(
    source: StatusSource,
    resources: ResourceStore,
    *,
    rows: int,
    refresh_s: float,
    clock: Clock,
) -> list[BaseRoute]:
    """The two routes, over the serving instance (``source``) and the
    store's resources; ``clock`` stamps the snapshots."""
    page, policy = _page()
    page_headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }

    async def status_page(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=page_headers)

    async def status_json(request: Request) -> Response:
        snapshot = await build_snapshot(
            source, resources, rows=rows, refresh_s=refresh_s, now_ms=int(clock.time() * 1000)
        )
        return Response(
            snapshot.to_json(),
            media_type="application/json",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route(STATUS_PAGE_PATH, reports_errors(status_page), methods=["GET"]),
        Route(STATUS_JSON_PATH, reports_errors(status_json), methods=["GET"]),
    ]
