"""What every settings group shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["GIB", "MIB", "Group"]

GIB = 1024**3
MIB = 1024**2


class Group(BaseModel):
    """A settings group: keys in ModelMesh's camelCase or snake_case, unknown
    keys refused, values frozen once built."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )
