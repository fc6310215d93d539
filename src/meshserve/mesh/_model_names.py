"""Which registered model a request means, from its name and headers.

A vmodel means its active model; ``mm-model-id`` / ``mm-vmodel-id`` win over
the name; a plain name no namespace was selected for reaches the one
namespace that has it.
"""

from __future__ import annotations

from meshserve._ids import ModelId
from meshserve.errors import InvalidRequestError, ModelNotFoundError, quote_client_value
from meshserve.protocol.routing import RoutingHeaders
from meshserve.registry import Registry
from meshserve.security import may_infer

__all__ = ["resolve_name"]


def resolve_name(registry: Registry, name: str, headers: RoutingHeaders) -> ModelId:
    """The registered model a request means: the routing headers win over
    ``name``; a vmodel means its active model."""
    if headers.model_id and headers.hops:
        # Forwarded by another instance, which saw the registration; this
        # mirror may not have yet (see Copies.await_record). It names the
        # client's vmodel too, for the metrics and the access log.
        return ModelId(headers.model_id)
    if headers.model_id and headers.vmodel_id:
        raise InvalidRequestError(
            "give either the mm-model-id or the mm-vmodel-id header, not both"
        )
    if headers.vmodel_id:
        vmodel = registry.vmodel(headers.vmodel_id)
        if vmodel is None:
            raise ModelNotFoundError(
                f"vmodel {quote_client_value(headers.vmodel_id)} is not registered"
            )
        return ModelId(vmodel.active_model_id)
    if headers.model_id:
        if registry.model(headers.model_id) is None:
            raise ModelNotFoundError(
                f"model {quote_client_value(headers.model_id)} is not registered"
            )
        return ModelId(headers.model_id)
    vmodel = registry.vmodel(name)
    if vmodel is not None:
        return ModelId(vmodel.active_model_id)
    if registry.model(name) is not None:
        return ModelId(name)
    if name and "/" not in name:
        found = _in_one_namespace(registry, name)
        if found is not None:
            return found
    raise ModelNotFoundError(f"model {quote_client_value(name)} is not registered")


def _in_one_namespace(registry: Registry, name: str) -> ModelId | None:
    """A plain name no namespace was selected for, and none in the
    default namespace: the one vmodel (else model) of that name among the
    namespaces the caller may use, as a client of that namespace's
    Service reaches it by its plain name. None when there is none;
    NOT_FOUND naming the namespaces when several have one. Only a miss
    pays for the scan."""
    suffix = f"/{name}"
    vmodels = registry.vmodels
    matches = [
        (key, ModelId(entry.record.active_model_id))
        for key, entry in vmodels.items()
        if key.endswith(suffix)
    ] or [(key, ModelId(key)) for key in registry.models if key.endswith(suffix)]
    usable = [(key, model_id) for key, model_id in matches if may_infer(model_id)]
    if len(usable) == 1:
        return usable[0][1]
    if usable:
        namespaces = ", ".join(sorted(key[: -len(suffix)] for key, _ in usable))
        raise ModelNotFoundError(
            f"model {quote_client_value(name)} is not registered in the default "
            f"namespace, and namespaces {namespaces} each have one: select one with "
            "the mm-namespace header"
        )
    return None
