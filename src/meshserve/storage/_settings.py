"""Settings of the model puller: ``storage`` in meshserve's one settings
object (declared there, with every other group)."""

from meshserve.settings import StorageSettings

__all__ = ["StorageSettings"]
