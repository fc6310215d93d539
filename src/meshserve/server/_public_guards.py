"""What the public ports check before a request reaches the instance.

In order: who calls (auth, when on), how often (the rate limit, when set),
and how many request bytes are held at once (the decode budget). The
public gRPC port and the REST port share one set, so that a caller's rate
and the bytes held count across both. (The internal port checks the mesh
secret instead: see ``_internal_port``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc.aio
from starlette.types import ASGIApp

from meshserve.metrics import Metrics
from meshserve.security import Authenticator, DeniedHook, RateLimiter, rate_limiter
from meshserve.server._auth import GrpcAuthInterceptor, RestAuthMiddleware
from meshserve.server._budget import DecodeBudget
from meshserve.server._grpc_guard import Check, GuardInterceptor
from meshserve.server._limits import (
    GrpcDecodeBudgetInterceptor,
    GrpcRateLimitInterceptor,
    RestRateLimitMiddleware,
)
from meshserve.settings import Settings

__all__ = ["PublicGuards"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicGuards:
    """The checks of the public ports; see the module docstring."""

    authenticator: Authenticator | None
    limiter: RateLimiter | None
    budget: DecodeBudget
    on_denied: DeniedHook

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics) -> PublicGuards:
        return cls(
            authenticator=(
                Authenticator.from_settings(settings.auth) if settings.auth.enabled else None
            ),
            limiter=rate_limiter(
                settings.limits, on_limited=lambda: metrics.limit_rejected("rate")
            ),
            budget=DecodeBudget(
                limit_bytes=settings.server.max_inflight_decode_bytes,
                on_refused=lambda: metrics.limit_rejected("inflight_bytes"),
            ),
            on_denied=metrics.auth_denied,
        )

    def grpc_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The public gRPC port's interceptors: its checks in one
        ``GuardInterceptor`` (one layer per call, not one per check), which
        also has the handlers decode their requests after them."""
        checks: list[Check] = []
        if self.authenticator is not None:
            checks.append(
                GrpcAuthInterceptor(authenticator=self.authenticator, on_denied=self.on_denied)
            )
        # After auth (inside it), so that callers are counted by principal.
        if self.limiter is not None:
            checks.append(GrpcRateLimitInterceptor(limiter=self.limiter))
        checks.append(GrpcDecodeBudgetInterceptor(budget=self.budget))
        return [GuardInterceptor(checks)]

    def wrap_rest(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind auth, then the rate limit (the decode budget is the
        app's own: it holds a body's bytes until the reply)."""
        if self.limiter is not None:
            app = RestRateLimitMiddleware(app, limiter=self.limiter)
        if self.authenticator is not None:
            app = RestAuthMiddleware(
                app, authenticator=self.authenticator, on_denied=self.on_denied
            )
        return app
