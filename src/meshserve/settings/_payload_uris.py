"""``payloads.processors`` parsed: which processors, for which payloads.

Here, beside the setting, so that a URI that is not a processor is refused
when the settings load (``meshserve config show`` too), not when the
instance starts; ``meshserve.payloads`` builds the processors from it.

As ModelMesh: space-separated URIs whose scheme is the processor
(``logger``, ``http``, ``https``); a query keeps one model's payloads
(``logger:///*?my-model``: a model id or the vmodel id the request named)
and a fragment one method (``#ModelInfer``). ``http(s)`` URIs are where the
payloads go; they may not carry a user or password (meshserve sends no
credential anywhere it was not asked to authenticate).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

__all__ = ["ProcessorSpec", "parse_processors"]

_SCHEMES = ("logger", "http", "https")


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """One processor of ``payloads.processors``."""

    scheme: str
    """``logger``, ``http`` or ``https``."""
    url: str
    """Where an http(s) processor POSTs (without query and fragment)."""
    model: str = ""
    """Only this model's (or vmodel's) payloads; empty: every model's."""
    method: str = ""
    """Only this method's (its short name, e.g. ``ModelInfer``); empty: all."""

    @property
    def name(self) -> str:
        """The processor as the dropped-payloads metric labels it."""
        return "logger" if self.scheme == "logger" else "remote"

    def wants(self, model_id: str, vmodel_id: str | None, method: str) -> bool:
        if self.model and self.model not in (model_id, vmodel_id):
            return False
        return not self.method or method.rpartition("/")[2] == self.method


def parse_processors(text: str) -> tuple[ProcessorSpec, ...]:
    """The processors ``text`` names (space-separated URIs); ValueError
    naming the URI that is not one (its password, if any, left out)."""
    return tuple(_parse(uri) for uri in text.split())


def _parse(uri: str) -> ProcessorSpec:
    parts = urllib.parse.urlsplit(uri)
    shown = _without_password(parts)
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"payload processor {shown}: the scheme must be one of "
            f"{', '.join(s + '://' for s in _SCHEMES)}"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"payload processor {shown}: a URI with a user or password; meshserve sends "
            "no credentials to payload processors"
        )
    if parts.scheme != "logger" and not parts.hostname:
        raise ValueError(f"payload processor {shown}: no host to send payloads to")
    url = (
        "logger://"  # a logger's path is ModelMesh's "/*" or nothing: no destination
        if parts.scheme == "logger"
        else urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
    )
    return ProcessorSpec(
        scheme=parts.scheme,
        url=url,
        model=urllib.parse.unquote(parts.query),
        method=parts.fragment,
    )


def _without_password(parts: urllib.parse.SplitResult) -> str:
    if parts.password is None:
        return parts.geturl()
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
