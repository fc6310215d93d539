"""The domain's ids, named once for every layer.

Each is a plain string on the wire and in the store; the types exist so
that mypy tells a model id from the vmodel id it was resolved from, or a
model id from the instance holding a copy of it, where a call takes both.
Wrap a string when it enters the domain (``ModelId(name)``): the wrap is
free at run time.
"""

from __future__ import annotations

from typing import NewType

__all__ = ["InstanceId", "ModelId", "VModelId"]

ModelId = NewType("ModelId", str)
"""A registered model (``modelId`` in ModelMesh's API)."""

VModelId = NewType("VModelId", str)
"""A vmodel: an alias whose requests go to its active model."""

InstanceId = NewType("InstanceId", str)
"""One instance of the mesh (the ``mesh.instanceId`` setting)."""
