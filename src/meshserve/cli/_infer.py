"""``meshserve infer``: send one v2 REST request body, print the v2 response."""

from __future__ import annotations

import pathlib
import urllib.parse
from typing import TYPE_CHECKING

import click

from meshserve.cli._client import EXIT_CODES_EPILOG, ClientTls, Connection, pass_connection
from meshserve.cli._output import print_json
from meshserve.cli._rest_client import rest_base, rest_request, rest_url_option
from meshserve.errors import InvalidRequestError

if TYPE_CHECKING:
    from meshserve.protocol.inference import InferenceRequest, InferenceResponse

__all__ = ["infer"]


@click.command(epilog=EXIT_CODES_EPILOG)
@click.argument("name", required=False)
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    help="A v2 REST request body (JSON), e.g. examples/requests/onnx.json.",
)
@click.option("--model-id", default=None, help="Route to this model (mm-model-id header).")
@click.option("--vmodel-id", default=None, help="Route to this vmodel (mm-vmodel-id header).")
@click.option("--rest", is_flag=True, help="Send it over REST instead of gRPC.")
@rest_url_option(note="; implies --rest")
@pass_connection
def infer(
    conn: Connection,
    name: str | None,
    input_file: pathlib.Path,
    model_id: str | None,
    vmodel_id: str | None,
    rest: bool,
    rest_url: str | None,
) -> None:
    """Run inference on model (or vmodel) NAME and print the v2 response JSON.

    NAME may be left out when --model-id or --vmodel-id names the target;
    when given too, those headers decide where the request goes.
    """
    # Imported here: the codecs bring numpy, which `infer --help` and a
    # usage error do without.
    from meshserve.protocol import codecs

    model_name = name or vmodel_id or model_id
    if not model_name:
        raise click.UsageError("give NAME, --model-id or --vmodel-id")
    body = input_file.read_bytes()
    try:
        # Decoded here, whatever the transport, so a bad file is a usage error.
        request = codecs.request_from_json(body, model_name=model_name)
    except InvalidRequestError as exc:
        raise click.BadParameter(f"{input_file}: {exc}", param_hint="--input") from None
    headers = [("mm-model-id", model_id)] if model_id else []
    headers += [("mm-vmodel-id", vmodel_id)] if vmodel_id else []
    if rest or rest_url:
        base = rest_base(rest_url)
        response = _infer_rest(
            base,
            model_name=model_name,
            body=body,
            headers=headers + [("Authorization", v) for _, v in conn.auth_metadata],
            timeout_s=conn.timeout_s,
            tls=conn.tls,
        )
    else:
        response = _infer_grpc(conn, request, headers=headers)
    # One line: tensors can be long, and tools like jq read it as well.
    print_json(codecs.response_to_json(response), indent=False)


def _infer_grpc(
    conn: Connection, request: InferenceRequest, *, headers: list[tuple[str, str]]
) -> InferenceResponse:
    from meshserve.protocol import codecs

    reply = conn.call(conn.v2.ModelInfer, codecs.request_to_proto(request), metadata=headers)
    return codecs.response_from_proto(reply)


def _infer_rest(
    base: str,
    *,
    model_name: str,
    body: bytes,
    headers: list[tuple[str, str]],
    timeout_s: float,
    tls: ClientTls | None,
) -> InferenceResponse:
    from meshserve.protocol import codecs

    payload = rest_request(
        base,
        f"/v2/models/{urllib.parse.quote(model_name, safe='')}/infer",
        body=body,
        headers={"Content-Type": "application/json", **dict(headers)},
        timeout_s=timeout_s,
        tls=tls,
    )
    return codecs.response_from_json(payload)
