"""``meshserve operator``: ModelMesh Serving's resources on a Kubernetes
cluster. ``_render`` holds what it renders (pure functions)."""
