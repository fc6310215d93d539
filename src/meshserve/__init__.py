"""meshserve: a multi-model ML serving mesh (KServe ModelMesh compatible)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
