"""The namespace a request selects, and the ids its plain names become."""

from __future__ import annotations

import pytest

from meshserve.errors import InvalidRequestError
from meshserve.protocol.routing import (
    NO_HEADERS,
    RoutingHeaders,
    in_namespace,
    namespaced_id,
    rest_model_path,
    routing_headers_from_grpc,
)


def test_ids_outside_the_default_namespace_carry_it() -> None:
    assert namespaced_id("team-a", "iris") == "team-a/iris"
    assert namespaced_id("default", "iris") == "iris"
    assert namespaced_id("", "iris") == "iris"


def test_the_rest_path_of_a_namespaced_model_names_it_plainly() -> None:
    assert rest_model_path("default", "iris") == "/v2/models/iris"
    assert rest_model_path("team-a", "iris") == "/namespaces/team-a/v2/models/iris"


def test_a_selected_namespace_scopes_every_plain_name() -> None:
    headers = RoutingHeaders(vmodel_id="iris", namespace="team-a")
    name, scoped = in_namespace("ignored", headers)
    assert name == "team-a/ignored"
    assert scoped.vmodel_id == "team-a/iris"
    assert scoped.model_id is None


@pytest.mark.parametrize(
    ("name", "headers", "default", "expected"),
    [
        ("iris", NO_HEADERS, None, "iris"),  # nothing selected: as given
        ("iris", NO_HEADERS, "team-a", "team-a/iris"),  # the caller's own
        ("iris", RoutingHeaders(namespace="team-b"), "team-a", "team-b/iris"),  # header wins
        ("iris", RoutingHeaders(namespace="default"), "team-a", "iris"),
        ("team-b/iris", RoutingHeaders(namespace="team-a"), None, "team-b/iris"),  # an id
        ("", RoutingHeaders(namespace="team-a"), None, ""),
    ],
)
def test_which_namespace_a_name_is_in(
    name: str, headers: RoutingHeaders, default: str | None, expected: str
) -> None:
    assert in_namespace(name, headers, default=default)[0] == expected


def test_grpc_metadata_selects_a_namespace_on_the_public_port_only() -> None:
    metadata = [("mm-namespace", "team-a"), ("mm-vmodel-id", "iris")]
    assert routing_headers_from_grpc(metadata).namespace == "team-a"
    assert routing_headers_from_grpc([("mm-namespace", "team-a")]).namespace == "team-a"
    # Instances forward resolved ids; a namespace there would rescope them.
    assert routing_headers_from_grpc(metadata, internal=True).namespace is None


@pytest.mark.parametrize("value", ["Team-A", "team/a", "-a", "a" * 64, "../x"])
def test_a_namespace_that_is_no_namespace_name_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="is not a namespace name"):
        routing_headers_from_grpc([("mm-namespace", value)])
