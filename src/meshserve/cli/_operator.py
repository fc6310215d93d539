"""``meshserve operator``: watch a cluster's ModelMesh Serving resources and run them."""

from __future__ import annotations

import logging
import os
import pathlib
import socket

import click

from meshserve.cli._options import stop_on_signals
from meshserve.cli._serve_options import serve
from meshserve.operator import KubeConnection, OperatorOptions, run_operator
from meshserve.settings import Settings, load_settings


@click.command()
@click.option(
    "--namespace",
    envvar="POD_NAMESPACE",
    required=True,
    help="The operator's namespace (its Lease, config, Secrets, Deployments)  [env: POD_NAMESPACE]",
)
@click.option(
    "--clusterwide",
    is_flag=True,
    help='Also serve the namespaces labelled modelmesh-enabled: "true".',
)
@click.option(
    "--image",
    envvar="MESHSERVE_IMAGE",
    required=True,
    help="The meshserve image the runtime pods run  [env: MESHSERVE_IMAGE]",
)
@click.option(
    "--identity",
    envvar="POD_NAME",
    default=None,
    help="This replica's name in the Lease  [env: POD_NAME; default: <host>-<pid>]",
)
@click.option(
    "--kube-url",
    default=None,
    help="The API server (tests: an emulator)  [default: the pod's service account's]",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    default=None,
    help="meshserve settings file (control.operator*; the cluster's own config is "
    "model-serving-config)",
)
def operator(
    namespace: str,
    clusterwide: bool,
    image: str,
    identity: str | None,
    kube_url: str | None,
    config: pathlib.Path | None,
) -> None:
    """Run the operator until SIGTERM: ServingRuntime, InferenceService and
    Predictor resources become Deployments and models of the mesh."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings: Settings = load_settings(config_file=config)
        connection = KubeConnection(server=kube_url) if kube_url else KubeConnection.in_cluster()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = OperatorOptions(
        connection=connection,
        namespace=namespace,
        identity=identity or f"{socket.gethostname()}-{os.getpid()}",
        image=image,
        clusterwide=clusterwide,
        allowed_runtime_images=settings.control.allowed_runtime_images,
    )

    async def main() -> None:
        await run_operator(settings, options, stop=stop_on_signals())

    serve(main())
