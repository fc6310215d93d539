"""The ids a resource's model and vmodel get in the mesh, and its model key."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import orjson

from meshserve.controller._resource_store import ResourceKey
from meshserve.errors import MeshServeError
from meshserve.protocol import routing
from meshserve.resources import (
    INFERENCE_SERVICE_SOURCE,
    PREDICTOR_SOURCE,
    InferenceService,
    ModelNames,
    ModelTarget,
    Predictor,
    model_names,
    parse_resource,
)
from meshserve.storage import build_model_key

__all__ = ["model_key_of", "revision_of", "scoped_names", "unservable_model_id"]


def scoped_names(names: ModelNames) -> ModelNames:
    """Ids outside the default namespace carry it: ``<namespace>/<name>``."""
    return dataclasses.replace(
        names,
        vmodel_id=routing.namespaced_id(names.namespace, names.vmodel_id),
        model_id=routing.namespaced_id(names.namespace, names.model_id),
    )


def revision_of(key: ResourceKey, document: dict[str, Any]) -> str:
    """The model revision a resource's spec names, as its failure reports
    it (:func:`unservable_model_id` for a spec that cannot be read)."""
    try:
        resource = parse_resource(document)
        assert isinstance(resource, InferenceService | Predictor)
        return scoped_names(model_names(resource)).model_id
    except MeshServeError:
        return unservable_model_id(key, document)


def unservable_model_id(key: ResourceKey, document: dict[str, Any]) -> str:
    """The revision a spec that cannot be served names in its failure:
    ``<name>__<source>-<hash>`` as a servable one's, the hash over the spec
    as applied (there is no Predictor spec to hash), so that it changes
    with the spec as upstream's modelRevisionName does."""
    source = PREDICTOR_SOURCE if key.kind == "Predictor" else INFERENCE_SERVICE_SOURCE
    spec = orjson.dumps(document.get("spec"), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha1(spec).hexdigest()[:10]
    return routing.namespaced_id(key.namespace, f"{key.name}__{source}-{digest}")


def model_key_of(target: ModelTarget) -> str:
    return build_model_key(
        model_type=target.model_format.name,
        model_type_version=target.model_format.version or "",
        storage_key=target.storage_key,
        storage_params=target.storage_params,
        schema_path=target.schema_path,
        extra=target.batching,
    )
