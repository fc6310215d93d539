"""One instance of the mesh: routing, the weighted cache of loaded models
(GDSF or ModelMesh's LRU eviction), loads and evictions, vmodels."""

from meshserve.mesh._cache import ModelCache
from meshserve.mesh._eviction import Gdsf, Lru
from meshserve.mesh._instance import Instance
from meshserve.mesh._instance_state import InstanceState
from meshserve.mesh._lru import WeightedLru
from meshserve.mesh._mesh_records import MeshRecords
from meshserve.mesh._placement import HOLDS_NO_MODELS
from meshserve.mesh._status import (
    CopyInfo,
    ModelState,
    ModelStatus,
    ModelSummary,
    VModelState,
    VModelStatus,
)

__all__ = [
    "HOLDS_NO_MODELS",
    "CopyInfo",
    "Gdsf",
    "Instance",
    "InstanceState",
    "Lru",
    "MeshRecords",
    "ModelCache",
    "ModelState",
    "ModelStatus",
    "ModelSummary",
    "VModelState",
    "VModelStatus",
    "WeightedLru",
]
