"""The few Kubernetes API calls the operator makes, over aiohttp.

kopf watches; everything the operator writes (Deployments, Services, HPAs,
the Lease, finalizers, status subresources) goes through :class:`KubeApi`,
one method per verb, so that the calls made are the verbs RBAC grants
(``OPERATOR_API_USE``). Inside a pod the API server and its credentials
come from the service account (``KUBERNETES_SERVICE_HOST``, the mounted
token and CA); tests give the emulator's URL.
"""

from __future__ import annotations

import os
import pathlib
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from meshserve.errors import UnavailableError

__all__ = ["ApiError", "Endpoint", "KubeApi", "KubeConnection", "Ref"]

_SERVICE_ACCOUNT = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ApiError(UnavailableError):
    """The API server refused or failed a call (``status`` is its HTTP code)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class KubeConnection:
    """Where the API server is and how to authenticate to it."""

    server: str
    token: str | None = None
    ca_path: str | None = None

    @classmethod
    def in_cluster(cls) -> KubeConnection:
        """The pod's own service account; ValueError outside a pod."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ValueError(
                "not in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset): give --kube-url"
            )
        token = (_SERVICE_ACCOUNT / "token").read_text().strip()
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}", token=token, ca_path=str(_SERVICE_ACCOUNT / "ca.crt")
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resource's place in the API: ``apps/v1 deployments``."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base if name is None else f"{base}/{name}"


@dataclass(frozen=True, slots=True)
class Ref:
    """One object: its endpoint, namespace (None: cluster-scoped) and name."""

    endpoint: Endpoint
    namespace: str | None
    name: str


class KubeApi:
    """get / list / create / patch / delete, and patch of the status subresource."""

    def __init__(self, connection: KubeConnection, *, timeout_s: float, user_agent: str) -> None:
        """``user_agent`` names this replica (the API server's audit log
        tells replicas apart by it)."""
        self._connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        headers = {"User-Agent": self._user_agent}
        if self._connection.token:
            headers["Authorization"] = f"Bearer {self._connection.token}"
        ssl_context: ssl.SSLContext | bool = True
        if self._connection.ca_path:
            ssl_context = ssl.create_default_context(cafile=self._connection.ca_path)
        self._session = aiohttp.ClientSession(
            base_url=self._connection.server,
            headers=headers,
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=ssl_context),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, ref: Ref) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        return await self._call("GET", ref.endpoint.path(ref.namespace, ref.name), missing_ok=True)

    async def list(
        self, endpoint: Endpoint, *, namespace: str | None, labels: str = ""
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": labels} if labels else None
        found = await self._call("GET", endpoint.path(namespace), params=params)
        items = (found or {}).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def create(self, ref: Ref, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create the object; None when one of that name exists already."""
        return await self._call(
            "POST", ref.endpoint.path(ref.namespace), json=body, conflict_ok=True
        )

    async def patch(self, ref: Ref, body: dict[str, Any], *, status: bool = False) -> None:
        """A JSON merge patch (RFC 7386) of the object, or of its status
        subresource; ApiError with 409 when ``body`` names a
        ``metadata.resourceVersion`` that is no longer the object's."""
        path = ref.endpoint.path(ref.namespace, ref.name) + ("/status" if status else "")
        await self._call(
            "PATCH",
            path,
            json=body,
            headers={"Content-Type": "application/merge-patch+json"},
            missing_ok=True,
        )

    async def delete(self, ref: Ref) -> None:
        """Delete the object (no effect if there is none)."""
        await self._call("DELETE", ref.endpoint.path(ref.namespace, ref.name), missing_ok=True)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        missing_ok: bool = False,
        conflict_ok: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        if self._session is None:
            raise RuntimeError("KubeApi used outside `async with`")
        try:
            async with self._session.request(method, path, **kwargs) as response:
                if (response.status == 404 and missing_ok) or (
                    response.status == 409 and conflict_ok
                ):
                    return None
                if response.status >= 400:
                    text = (await response.text())[:500]
                    raise ApiError(
                        f"{method} {path}: HTTP {response.status}: {text}", status=response.status
                    )
                found = await response.json(content_type=None)
                return found if isinstance(found, dict) else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(f"{method} {path}: {exc or type(exc).__name__}", status=0) from None
