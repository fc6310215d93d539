from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ("modelId",)
    MODELID_FIELD_NUMBER: _ClassVar[int]
    modelId: str
    def __init__(self, modelId: _Optional[str] = ...) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("modelId", "type", "path", "status", "errors", "sizeBytes", "lastUsedTime", "copies", "loadCount", "evictionCount", "lastLoadMillis", "autoDelete", "vModelIds", "pullMillis", "pullBytes", "pullTotalBytes", "pulledFromCache")
    MODELID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SIZEBYTES_FIELD_NUMBER: _ClassVar[int]
    LASTUSEDTIME_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    LOADCOUNT_FIELD_NUMBER: _ClassVar[int]
    EVICTIONCOUNT_FIELD_NUMBER: _ClassVar[int]
    LASTLOADMILLIS_FIELD_NUMBER: _ClassVar[int]
    AUTODELETE_FIELD_NUMBER: _ClassVar[int]
    VMODELIDS_FIELD_NUMBER: _ClassVar[int]
    PULLMILLIS_FIELD_NUMBER: _ClassVar[int]
    PULLBYTES_FIELD_NUMBER: _ClassVar[int]
    PULLTOTALBYTES_FIELD_NUMBER: _ClassVar[int]
    PULLEDFROMCACHE_FIELD_NUMBER: _ClassVar[int]
    modelId: str
    type: str
    path: str
    status: str
    errors: _containers.RepeatedScalarFieldContainer[str]
    sizeBytes: int
    lastUsedTime: int
    copies: int
    loadCount: int
    evictionCount: int
    lastLoadMillis: int
    autoDelete: bool
    vModelIds: _containers.RepeatedScalarFieldContainer[str]
    pullMillis: int
    pullBytes: int
    pullTotalBytes: int
    pulledFromCache: bool
    def __init__(self, modelId: _Optional[str] = ..., type: _Optional[str] = ..., path: _Optional[str] = ..., status: _Optional[str] = ..., errors: _Optional[_Iterable[str]] = ..., sizeBytes: _Optional[int] = ..., lastUsedTime: _Optional[int] = ..., copies: _Optional[int] = ..., loadCount: _Optional[int] = ..., evictionCount: _Optional[int] = ..., lastLoadMillis: _Optional[int] = ..., autoDelete: _Optional[bool] = ..., vModelIds: _Optional[_Iterable[str]] = ..., pullMillis: _Optional[int] = ..., pullBytes: _Optional[int] = ..., pullTotalBytes: _Optional[int] = ..., pulledFromCache: _Optional[bool] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSummary]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSummary, _Mapping]]] = ...) -> None: ...

class ListVModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VModelSummary(_message.Message):
    __slots__ = ("vModelId", "status", "activeModelId", "targetModelId", "owner")
    VMODELID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTIVEMODELID_FIELD_NUMBER: _ClassVar[int]
    TARGETMODELID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    vModelId: str
    status: str
    activeModelId: str
    targetModelId: str
    owner: str
    def __init__(self, vModelId: _Optional[str] = ..., status: _Optional[str] = ..., activeModelId: _Optional[str] = ..., targetModelId: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ListVModelsResponse(_message.Message):
    __slots__ = ("vModels",)
    VMODELS_FIELD_NUMBER: _ClassVar[int]
    vModels: _containers.RepeatedCompositeFieldContainer[VModelSummary]
    def __init__(self, vModels: _Optional[_Iterable[_Union[VModelSummary, _Mapping]]] = ...) -> None: ...

class ResourceRef(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ApplyResourcesRequest(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[str]] = ...) -> None: ...

class AppliedResource(_message.Message):
    __slots__ = ("ref", "created", "unchanged")
    REF_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    created: bool
    unchanged: bool
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., created: _Optional[bool] = ..., unchanged: _Optional[bool] = ...) -> None: ...

class ApplyResourcesResponse(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: _containers.RepeatedCompositeFieldContainer[AppliedResource]
    def __init__(self, applied: _Optional[_Iterable[_Union[AppliedResource, _Mapping]]] = ...) -> None: ...

class GetResourcesRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetResourcesResponse(_message.Message):
    __slots__ = ("documents",)
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResourcesRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[ResourceRef]
    def __init__(self, refs: _Optional[_Iterable[_Union[ResourceRef, _Mapping]]] = ...) -> None: ...

class DeletedResource(_message.Message):
    __slots__ = ("ref", "deleted")
    REF_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    ref: ResourceRef
    deleted: bool
    def __init__(self, ref: _Optional[_Union[ResourceRef, _Mapping]] = ..., deleted: _Optional[bool] = ...) -> None: ...

class DeleteResourcesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DeletedResource]
    def __init__(self, results: _Optional[_Iterable[_Union[DeletedResource, _Mapping]]] = ...) -> None: ...
