from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("modelId", "type", "path", "status", "errors", "sizeBytes", "lastUsedTime", "loadCount", "evictionCount", "lastLoadMillis", "autoDelete", "vModelIds", "pullMillis", "pullBytes", "pullTotalBytes", "pulledFromCache")
    MODELID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SIZEBYTES_FIELD_NUMBER: _ClassVar[int]
    LASTUSEDTIME_FIELD_NUMBER: _ClassVar[int]
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
    loadCount: int
    evictionCount: int
    lastLoadMillis: int
    autoDelete: bool
    vModelIds: _containers.RepeatedScalarFieldContainer[str]
    pullMillis: int
    pullBytes: int
    pullTotalBytes: int
    pulledFromCache: bool
    def __init__(self, modelId: _Optional[str] = ..., type: _Optional[str] = ..., path: _Optional[str] = ..., status: _Optional[str] = ..., errors: _Optional[_Iterable[str]] = ..., sizeBytes: _Optional[int] = ..., lastUsedTime: _Optional[int] = ..., loadCount: _Optional[int] = ..., evictionCount: _Optional[int] = ..., lastLoadMillis: _Optional[int] = ..., autoDelete: _Optional[bool] = ..., vModelIds: _Optional[_Iterable[str]] = ..., pullMillis: _Optional[int] = ..., pullBytes: _Optional[int] = ..., pullTotalBytes: _Optional[int] = ..., pulledFromCache: _Optional[bool] = ...) -> None: ...

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
