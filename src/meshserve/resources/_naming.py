"""The ids a Predictor or InferenceService maps to in the mesh.

ModelMesh Serving registers each resource as a vmodel named after it whose
target is a concrete model ``<name>__<source>-<hash>``: source ``isvc`` for
an InferenceService, ``ksp`` for a Predictor, and the first 5 bytes (10 hex
digits) of the SHA-1 of the Predictor spec as Go's encoding/json writes it.
A changed spec is a new model id, so an update is a vmodel transition.

:func:`spec_hash` writes that JSON byte for byte (struct field order, nil
pointers omitted, sorted map keys, Go's string escaping), so the ids equal
ModelMesh Serving's: the published ``example-sklearn-isvc__isvc-3642375d03``
and ``__ksp-7702c1b55a`` examples are reproduced in the tests.

Namespaces: ModelMesh Serving gives every namespace its own mesh (its own
runtime pods, Service ``modelmesh-serving.<ns>``, and etcd root prefix
``<root_prefix>/mm_ns/<ns>``), so the ids carry no namespace: the vmodel id
is the bare resource name, which is what clients send as ``model_name``.
meshserve keeps that contract by scoping the registry per namespace
(:func:`registry_scope`) rather than by prefixing ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from meshserve.resources._inference_service import InferenceService
from meshserve.resources._predictor import Predictor
from meshserve.resources._target import ModelTarget, model_target

__all__ = [
    "INFERENCE_SERVICE_SOURCE",
    "NO_RUNTIME_LABEL",
    "PREDICTOR_SOURCE",
    "ModelNames",
    "go_json",
    "model_names",
    "model_type_label",
    "registry_scope",
    "spec_hash",
]

INFERENCE_SERVICE_SOURCE = "isvc"
PREDICTOR_SOURCE = "ksp"
NO_RUNTIME_LABEL = "_no_runtime"
"""The label ModelMesh Serving gives a type no runtime supports."""


@dataclasses.dataclass(frozen=True, slots=True)
class ModelNames:
    """How one resource appears in the mesh."""

    namespace: str
    vmodel_id: str
    """The resource's name: what clients send as ``model_name``."""
    model_id: str
    """The concrete target model, ``<name>__<owner>-<hash>``."""
    owner: str
    """The vmodel owner, ``isvc`` or ``ksp``: two resources of different
    kinds with one name collide, as in ModelMesh Serving."""
    type_label: str
    """ModelInfo.type: ``rt:<runtime>``, or ``mt:<format>[:<version>][|pv:<protocol>]``."""
    registry_scope: str


def model_names(resource: Predictor | InferenceService) -> ModelNames:
    """Validate ``resource`` and return its ids (InvalidResourceError if it is
    not servable)."""
    target = model_target(resource)
    owner = PREDICTOR_SOURCE if isinstance(resource, Predictor) else INFERENCE_SERVICE_SOURCE
    return ModelNames(
        namespace=resource.namespace,
        vmodel_id=resource.name,
        model_id=f"{resource.name}__{owner}-{spec_hash(target)}",
        owner=owner,
        type_label=model_type_label(target),
        registry_scope=registry_scope(resource.namespace),
    )


def spec_hash(target: ModelTarget) -> str:
    """10 hex digits of the SHA-1 of the target's Predictor spec JSON."""
    return hashlib.sha1(go_json(target.predictor_spec).encode()).hexdigest()[:10]


def model_type_label(target: ModelTarget) -> str:
    """The placement label ModelMesh Serving registers the model with."""
    if target.runtime:
        return f"rt:{target.runtime}"
    label = f"mt:{target.model_format.name}"
    if target.model_format.version is not None:
        label += f":{target.model_format.version}"
    if target.protocol_version is not None:
        label += f"|pv:{target.protocol_version}"
    return label


def registry_scope(namespace: str) -> str:
    """The key prefix under which a namespace's mesh keeps its records,
    matching ModelMesh Serving's per-namespace etcd root (``mm_ns/<ns>``)."""
    return f"mm_ns/{namespace}"


# Go's encoding/json escapes these on top of what JSON requires (HTML safety
# and JavaScript line separators); \b and \f it writes as \u escapes too.
_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> str:
    """Compact JSON the way Go's json.Marshal writes it. Mappings keep their
    order (callers sort map-typed values; struct fields are in order)."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case str():
            return '"' + "".join(_go_char(char) for char in value) + '"'
        case dict():
            return "{" + ",".join(f"{go_json(str(k))}:{go_json(v)}" for k, v in value.items()) + "}"
        case list() | tuple():
            return "[" + ",".join(go_json(item) for item in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as Go JSON")


def _go_char(char: str) -> str:
    escaped = _GO_ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if char < " ":
        return f"\\u{ord(char):04x}"
    return char
