"""The OpenAPI 3 document of the REST port, served at ``/v2/openapi.json``.

It describes every route ``_rest.create_rest_app`` serves, the v2 routes
both at the root and under ``/namespaces/{namespace}``;
``tests/unit/server/test_openapi.py`` checks the two lists are the same
and that the document is valid OpenAPI 3.0. OpenAPI 3.0 rather than 3.1:
the vendored Swagger UI (4.x) renders 3.0.
"""

from __future__ import annotations

import copy
from typing import Any

from meshserve import __version__
from meshserve._log_context import REQUEST_ID_HEADER
from meshserve.protocol.codecs import INFERENCE_HEADER_CONTENT_LENGTH
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.routing import REST_NAMESPACE_PREFIX

__all__ = ["OPENAPI_PATH", "openapi_document"]

OPENAPI_PATH = "/v2/openapi.json"

Json = dict[str, Any]

_OPEN: list[Json] = []
"""``security`` of a route that needs no credential with auth on."""


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "The request failed: the message says why.")
_UNAUTHORIZED = {
    "401": _json(_ref("Error"), "No valid credential (auth on)."),
    "403": _json(_ref("Error"), "The credential's role or namespace does not allow it."),
}


def _path_parameter(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _header(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


_NAME = _path_parameter("name", "A model id or vmodel id (plain, or namespace/name).")
_VERSION = _path_parameter("version", "Passed on in the request; not checked.")
_NAMESPACE = _path_parameter("namespace", "Plain model names mean this namespace's models.")
_ROUTING = [
    _header("mm-model-id", "ModelMesh routing header: the model id, over the path's name."),
    _header("mm-vmodel-id", "ModelMesh routing header: the vmodel id, over the path's name."),
    _header("mm-namespace", "The namespace plain model names are in."),
    _header(REQUEST_ID_HEADER, "The request's id in the logs (a new one when absent)."),
]


def _health() -> dict[str, Json]:
    ready = {
        "200": _json(_ref("ServerReady"), "Ready: serving, not starting nor draining."),
        "503": _json(_ref("ServerReady"), "Not ready: starting, or draining before it stops."),
    }
    live = {"200": _json(_ref("ServerLive"), "The process is up.")}
    return {
        "/v2/health/live": {
            "get": _op("serverLive", "Server liveness (v2)", live, tag="health", open_=True)
        },
        "/v2/health/ready": {
            "get": _op("serverReady", "Server readiness (v2)", ready, tag="health", open_=True)
        },
    }


def _op(
    operation_id: str,
    summary: str,
    responses: Json,
    *,
    tag: str,
    open_: bool = False,
    parameters: list[Json] | None = None,
    body: Json | None = None,
) -> Json:
    operation: Json = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses if open_ else {**responses, **_UNAUTHORIZED},
    }
    if open_:
        operation["security"] = _OPEN
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _v2_paths() -> dict[str, Json]:
    """The v2 routes, as served at the root."""
    paths = _health()
    paths["/v2"] = {
        "get": _op(
            "serverMetadata",
            "Server metadata (v2)",
            {"200": _json(_ref("ServerMetadata"), "Name, version and extensions.")},
            tag="v2",
            open_=True,
        )
    }
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    for base, suffix_id, params in (
        (model, "", [_NAME, *_ROUTING]),
        (versioned, "Version", [_NAME, _VERSION, *_ROUTING]),
    ):
        paths[base] = {
            "get": _op(
                f"modelMetadata{suffix_id}",
                "Model metadata: its inputs and outputs",
                {
                    "200": _json(_ref("ModelMetadata"), "The model's metadata."),
                    "404": _ERROR,
                },
                tag="v2",
                parameters=params,
            )
        }
        paths[base + "/ready"] = {
            "get": _op(
                f"modelReady{suffix_id}",
                "Model readiness",
                {
                    "200": _json(_ref("ModelReady"), "A copy is loaded."),
                    "400": _json(_ref("ModelReady"), "Known, not loaded (an infer loads it)."),
                    "404": _ERROR,
                },
                tag="v2",
                parameters=params,
            )
        }
        paths[base + "/infer"] = {
            "post": _op(
                f"modelInfer{suffix_id}",
                "Inference (loads the model first when no copy is loaded)",
                _INFER_RESPONSES,
                tag="v2",
                parameters=params,
                body=_INFER_BODY,
            )
        }
    return paths


_BINARY_NOTE = (
    "Triton's binary tensor extension: a JSON header of "
    f"`{INFERENCE_HEADER_CONTENT_LENGTH}` bytes, then the tensors' raw bytes."
)
_INFER_BODY: Json = {
    "required": True,
    "description": "JSON, or with the `" + INFERENCE_HEADER_CONTENT_LENGTH + "` header "
    "the binary tensor extension. May be gzip or deflate (`Content-Encoding`).",
    "content": {
        "application/json": {"schema": _ref("InferenceRequest")},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary", "description": _BINARY_NOTE}
        },
    },
}
_INFER_RESPONSES: Json = {
    "200": {
        "description": "The outputs (binary when the request asked for binary outputs).",
        "content": {
            "application/json": {"schema": _ref("InferenceResponse")},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": _BINARY_NOTE}
            },
        },
    },
    "400": _ERROR,
    "404": _ERROR,
    "413": _ERROR,
    "429": _json(_ref("Error"), "Over the rate limit or the decode budget: retry later."),
    "503": _ERROR,
}


def _own_paths() -> dict[str, Json]:
    """The routes served at the root only."""
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        "/live": {
            "get": _op(
                "live",
                "Liveness probe: the process is up",
                {"200": _json(_ref("ServerLive"), "The process is up.")},
                tag="health",
                open_=True,
            )
        },
        "/ready": {
            "get": _op(
                "ready",
                "Readiness probe: false while starting or draining",
                {
                    "200": _json(_ref("ServerReady"), "Ready."),
                    "503": _json(_ref("ServerReady"), "Not ready: starting or draining."),
                },
                tag="health",
                open_=True,
            )
        },
        OPENAPI_PATH: {
            "get": _op(
                "openapi",
                "This document",
                {"200": _json({"type": "object"}, "The OpenAPI 3 document.")},
                tag="docs",
            )
        },
        "/docs": {
            "get": _op(
                "docs",
                "Swagger UI page over this document",
                {"200": {"description": "The page.", "content": html}},
                tag="docs",
            )
        },
        "/status": {
            "get": _op(
                "statusPage",
                "The status page: the mesh at a glance (polls /status.json)",
                {"200": {"description": "The page; it holds no data itself.", "content": html}},
                tag="status",
                open_=True,
            )
        },
        "/status.json": {
            "get": _op(
                "status",
                "The mesh now: instances, hottest models and their copies, loads in flight, "
                "recent failures, InferenceServices (only what the caller may see)",
                {"200": _json({"type": "object"}, "The snapshot (docs/observability.md).")},
                tag="status",
            )
        },
        "/docs/{asset}": {
            "get": _op(
                "docsAsset",
                "A file of the Swagger UI page",
                {
                    "200": {"description": "The file (script, style sheet or icon)."},
                    "404": _ERROR,
                },
                tag="docs",
                parameters=[_path_parameter("asset", "The file's name.")],
            )
        },
    }


def _namespaced(paths: dict[str, Json]) -> dict[str, Json]:
    """``paths`` again under ``/namespaces/{namespace}``."""
    out: dict[str, Json] = {}
    for path, item in paths.items():
        item = copy.deepcopy(item)
        for operation in item.values():
            operation["operationId"] += "InNamespace"
            operation["parameters"] = [_NAMESPACE, *operation.get("parameters", ())]
        out[REST_NAMESPACE_PREFIX + path] = item
    return out


def openapi_document() -> Json:
    """The whole document (a new dict each call)."""
    v2 = _v2_paths()
    return copy.deepcopy(
        {
            "openapi": "3.0.3",
            "info": {
                "title": "meshserve REST API",
                "version": __version__,
                "description": (
                    "The Open Inference Protocol (KServe v2) over REST, served by every "
                    "meshserve instance, with health probes and this document. Model "
                    "management is over gRPC (mmesh.ModelMesh, meshserve.admin.v1.Admin)."
                ),
            },
            "tags": [
                {"name": "v2", "description": "Open Inference Protocol (KServe v2)"},
                {"name": "health", "description": "Probes: open even with auth on"},
                {"name": "docs", "description": "This document and its page"},
            ],
            "security": [{"bearer": []}],
            "paths": {**_own_paths(), **v2, **_namespaced(v2)},
            "components": {"securitySchemes": _SECURITY, "schemas": _SCHEMAS},
        }
    )


_SECURITY: Json = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "With auth.enabled: a token of auth.tokens (see docs/security.md).",
    }
}

_PARAMETERS: Json = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]
    },
}
_SHAPE: Json = {"type": "array", "items": {"type": "integer", "format": "int64"}}
_DATATYPE: Json = {"type": "string", "enum": [datatype.value for datatype in Datatype]}
_TENSOR: Json = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": _SHAPE,
        "datatype": _DATATYPE,
        "parameters": _PARAMETERS,
        "data": {
            "type": "array",
            "description": "Row-major values, flat or nested; absent with binary_data_size.",
            "items": {},
        },
    },
}
_TENSOR_METADATA: Json = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": _DATATYPE, "shape": _SHAPE},
}
_SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "ServerLive": {
        "type": "object",
        "required": ["live"],
        "properties": {"live": {"type": "boolean"}},
    },
    "ServerReady": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    },
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string", "description": "The concrete model id."},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR_METADATA},
            "outputs": {"type": "array", "items": _TENSOR_METADATA},
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
                },
            },
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _PARAMETERS,
            "outputs": {"type": "array", "items": _TENSOR},
        },
    },
}
