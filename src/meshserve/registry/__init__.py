"""Typed records over the store (models, vmodels) and their watched mirror."""

from meshserve.registry._records import ModelRecord, VModelRecord
from meshserve.registry._registry import Registry, Versioned

__all__ = ["ModelRecord", "Registry", "VModelRecord", "Versioned"]
