"""``-n/--namespace`` for the commands that take model and vmodel ids.

The controller names what a resource of namespace NS serves ``NS/NAME``
(``default``'s keep their plain name), and authorisation reads the
namespace from that prefix; ``-n NS NAME`` is the same as ``NS/NAME``.
"""

from __future__ import annotations

import click

from meshserve.protocol.routing import DEFAULT_NAMESPACE, namespaced_id

__all__ = ["in_listing", "in_namespace", "namespace_option"]

namespace_option = click.option(
    "-n",
    "--namespace",
    default=None,
    help="The namespace of the id: NAME becomes NAMESPACE/NAME ('default': NAME as it is).",
)


def in_namespace(name: str, namespace: str | None) -> str:
    """``name`` as an id of ``namespace`` (None: as given). A name that
    already carries another namespace is a usage error."""
    if namespace is None or not name:
        return name
    prefix, slash, _ = name.partition("/")
    if slash:
        if prefix != namespace:
            raise click.UsageError(f"{name!r} is in namespace {prefix!r}, not -n {namespace!r}")
        return name
    return namespaced_id(namespace, name)


def in_listing(name: str, namespace: str | None) -> bool:
    """Whether a listing filtered by -n shows id ``name`` (None: every id)."""
    if namespace is None:
        return True
    prefix, slash, _ = name.partition("/")
    return prefix == namespace if slash else namespace == DEFAULT_NAMESPACE
