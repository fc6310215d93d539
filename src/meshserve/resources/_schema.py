"""The base of every resource schema: field warnings, metadata, common fields.

Resources are shaped after ModelMesh Serving's CRDs (field names are the
CRDs' camelCase). Nothing is dropped: a field the schema does not know is
kept (and written back by :meth:`ResourceBase.to_document`), and
:meth:`ResourceBase.ignored_fields` lists, as dotted paths, every field
meshserve parses but does not act on, so ``apply`` can warn about each one.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from meshserve.errors import InvalidRequestError
from meshserve.resources._uri import check_no_credentials

__all__ = [
    "DEPLOYMENT_MODE_ANNOTATION",
    "MODELMESH_DEPLOYMENT_MODE",
    "RUNTIME_ANNOTATION",
    "SCHEMA_PATH_ANNOTATION",
    "SECRET_KEY_ANNOTATION",
    "FieldWarning",
    "Location",
    "ModelFormat",
    "ObjectMeta",
    "ResourceBase",
    "Schema",
    "WarningKind",
]

GROUP = "serving.kserve.io"

DEPLOYMENT_MODE_ANNOTATION = f"{GROUP}/deploymentMode"
MODELMESH_DEPLOYMENT_MODE = "ModelMesh"
RUNTIME_ANNOTATION = f"{GROUP}/servingRuntime"
SECRET_KEY_ANNOTATION = f"{GROUP}/secretKey"
SCHEMA_PATH_ANNOTATION = f"{GROUP}/schemaPath"

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class WarningKind(enum.Enum):
    """Why a field earns a warning."""

    IGNORED = "ignored"
    """The CRD defines it, meshserve does not act on it."""
    UNKNOWN = "unknown"
    """The CRD does not define it (a typo, or a newer API); kept as written."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldWarning:
    """One field of a resource that meshserve keeps but does not act on."""

    path: str
    kind: WarningKind

    def __str__(self) -> str:
        if self.kind is WarningKind.UNKNOWN:
            return f"{self.path}: unknown field, kept but not used"
        return f"{self.path}: not acted on by meshserve"


class Schema(BaseModel):
    # frozen: a parsed resource is a value; the controller derives from it.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )

    ignored: ClassVar[frozenset[str]] = frozenset()
    """Keys (as spelled in YAML) the CRD defines but meshserve does not act on,
    whether this class models them or keeps them as extras."""

    def _warnings(self, prefix: str) -> Iterator[FieldWarning]:
        for name, field in type(self).model_fields.items():
            if name not in self.model_fields_set:
                continue
            key = field.alias or name
            path = f"{prefix}.{key}" if prefix else key
            if key in self.ignored:
                yield FieldWarning(path, WarningKind.IGNORED)
                continue
            yield from _nested_warnings(getattr(self, name), path)
        for key in self.model_extra or {}:
            path = f"{prefix}.{key}" if prefix else key
            kind = WarningKind.IGNORED if key in self.ignored else WarningKind.UNKNOWN
            yield FieldWarning(path, kind)


def _nested_warnings(value: object, path: str) -> Iterator[FieldWarning]:
    if isinstance(value, Schema):
        yield from value._warnings(path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nested_warnings(item, f"{path}[{index}]")


# --- metadata ---------------------------------------------------------------


class ObjectMeta(Schema):
    """The parts of Kubernetes object metadata meshserve keeps."""

    ignored = frozenset(
        {
            "generateName",
            "finalizers",
            "ownerReferences",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        }
    )

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    creation_timestamp: datetime.datetime | None = None

    @field_validator("name")
    @classmethod
    def _name_is_dns_subdomain(cls, value: str) -> str:
        if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
            raise ValueError(
                "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_dns_label(cls, value: str) -> str:
        if len(value) > 63 or not _DNS1123_LABEL.match(value):
            raise ValueError("must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63)")
        return value


class ResourceBase(Schema):
    """Fields every resource document has."""

    ignored = frozenset({"status"})

    api_version: str
    metadata: ObjectMeta
    # Written by the controller; what a file says here is not applied.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def ignored_fields(self) -> list[FieldWarning]:
        """Every field meshserve keeps without acting on it, as dotted paths."""
        return list(self._warnings(""))

    def to_document(self) -> dict[str, Any]:
        """The resource as a JSON-able mapping, unknown fields included."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# --- fields the model resources share ---------------------------------------


def _no_credentials(text: str) -> str:
    # Checked when the document is parsed, so a URI with a credential in it
    # is refused before it is stored (and shown to every reader).
    try:
        check_no_credentials(text)
    except InvalidRequestError as exc:
        raise PydanticCustomError("credential_in_uri", exc.message) from None
    return text


Location = Annotated[str, AfterValidator(_no_credentials)]
"""A model location (``storageUri``, a path, a storage parameter): a URI in
it may carry no credential."""


class ModelFormat(Schema):
    """A model format name and optional version (Predictor ``modelType``,
    InferenceService ``modelFormat``)."""

    name: str
    version: str | None = None
