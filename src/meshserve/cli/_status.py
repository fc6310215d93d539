"""``meshserve status``: the status page (``GET /status``) in a terminal."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

import click

from meshserve.cli._client import EXIT_CODES_EPILOG, CallOptions, ServerError, pass_call_options
from meshserve.cli._output import Table, age, output_option, print_json, size
from meshserve.cli._rest_client import rest_base, rest_request, rest_url_option
from meshserve.protocol.status_snapshot import StatusSnapshot

__all__ = ["render_snapshot", "status"]


@click.command(epilog=EXIT_CODES_EPILOG)
@rest_url_option()
@click.option(
    "-w",
    "--watch",
    type=click.FloatRange(min=0.5),
    default=None,
    metavar="SECONDS",
    help="Show it again every SECONDS until Ctrl-C.",
)
@output_option
@pass_call_options
def status(
    rest_url: str | None, watch: float | None, output: str, call_options: CallOptions
) -> None:
    """Show the mesh as the status page does: instances (capacity, models,
    LRU age, requests/min), the hottest models and their copies, loads in
    flight, recent load failures with their reasons, and InferenceServices.

    \b
    Read from GET <rest-url>/status.json (with --token when the server has
    auth.enabled: the read role; you see the models and InferenceServices
    of the namespaces you may read). Any instance shows the whole mesh.
    -o json prints the snapshot as the page receives it. With --watch, a
    failed fetch shows its error and the next refresh tries again."""
    base = rest_base(rest_url)
    headers = {"Accept": "application/json"}
    if call_options.token:
        headers["Authorization"] = f"Bearer {call_options.token}"

    def fetch() -> bytes:
        return rest_request(
            base,
            "/status.json",
            headers=headers,
            timeout_s=call_options.timeout_s,
            tls=call_options.tls,
        )

    def show() -> None:
        snapshot = _snapshot(fetch(), base)
        if output == "json":
            print_json(snapshot.to_dict(), indent=False)
        else:
            click.echo(render_snapshot(snapshot))

    if watch is None:
        show()
        return
    _watch(show, every_s=watch)


def _snapshot(payload: bytes, base: str) -> StatusSnapshot:
    try:
        return StatusSnapshot.from_json(payload)
    except ValueError as exc:
        # Something answered, but not a meshserve of this kind.
        raise ServerError(f"{base}/status.json: {exc}") from None


def _watch(show: Callable[[], None], *, every_s: float) -> None:
    """``show()`` every ``every_s`` seconds until Ctrl-C; on a terminal the
    screen is cleared between frames, elsewhere frames are separated. A
    frame whose fetch fails shows the error, and the next one tries again
    (an instance restarting is worth watching too)."""
    tty = sys.stdout.isatty()
    with contextlib.suppress(KeyboardInterrupt):
        first = True
        while True:
            if tty:
                click.clear()
            elif not first:
                click.echo("")
            click.echo(f"Every {every_s:g}s: meshserve status    {time.strftime('%H:%M:%S')}\n")
            try:
                show()
            except ServerError as exc:
                exc.show()
            first = False
            time.sleep(every_s)


def render_snapshot(snapshot: StatusSnapshot, *, now_s: float | None = None) -> str:
    """The snapshot as the terminal shows it: one titled table per section."""
    now = now_s if now_s is not None else snapshot.time_ms / 1000
    sections: list[tuple[str, Table, str]] = [
        (
            f"INSTANCES ({len(snapshot.instances)}, from {snapshot.served_by})",
            Table(
                ("INSTANCE", "USED", "CAPACITY", "USE", "MODELS", "LRU-AGE", "RPM", "LOADING"),
                [
                    (
                        i.instance_id
                        + (" *" if i.here else "")
                        + (" (draining)" if i.shutting_down else ""),
                        size(i.used_bytes),
                        size(i.capacity_bytes),
                        _bar(i.used_bytes, i.capacity_bytes),
                        str(i.model_count),
                        age(i.lru_oldest_ms, now_s=now),
                        str(i.rpm),
                        f"{i.loading_count}/{i.loading_slots}",
                    )
                    for i in snapshot.instances
                ],
            ),
            "no instances",
        ),
        (
            _count("HOTTEST MODELS", len(snapshot.models), snapshot.models_total),
            Table(
                ("MODEL", "TYPE", "COPIES", "ON", "SIZE", "LAST-USED", "RPM-HERE"),
                [
                    (
                        m.model_id,
                        m.type,
                        str(len(m.copies)),
                        ",".join([*m.copies, *(f"{i}(loading)" for i in m.loading_on)]) or "-",
                        size(m.size_bytes),
                        age(m.last_used_ms, now_s=now),
                        str(m.rpm_here),
                    )
                    for m in snapshot.models
                ],
            ),
            "no models registered",
        ),
        (
            _count("LOADS IN FLIGHT", len(snapshot.loads)),
            Table(
                ("MODEL", "INSTANCE", "FOR"),
                [
                    (load.model_id, load.instance_id, age(load.since_ms, now_s=now))
                    for load in snapshot.loads
                ],
            ),
            "nothing loading",
        ),
        (
            _count("RECENT FAILURES", len(snapshot.failures)),
            Table(
                ("MODEL", "INSTANCE", "AGO", "REASON"),
                [
                    (
                        f.model_id,
                        f.instance_id,
                        age(f.time_ms, now_s=now),
                        f"{f.error_type}: {f.reason}" if f.error_type else f.reason,
                    )
                    for f in snapshot.failures
                ],
            ),
            "no recent load failures",
        ),
        (
            _count("INFERENCESERVICES", len(snapshot.services)),
            Table(
                (
                    "NAMESPACE",
                    "NAME",
                    "READY",
                    "ACTIVE",
                    "TARGET",
                    "TRANSITION",
                    "COPIES",
                    "FAILURE",
                ),
                [
                    (
                        v.namespace,
                        v.name,
                        v.ready,
                        v.active_model_state or "-",
                        v.target_model_state or "-",
                        v.transition_status or "-",
                        f"{v.total_copies}"
                        + (f" ({v.failed_copies} failed)" if v.failed_copies else ""),
                        f"{v.failure_reason}: {v.failure_message}" if v.failure_reason else "-",
                    )
                    for v in snapshot.services
                ],
            ),
            "no InferenceServices",
        ),
    ]
    return "\n\n".join(_section(title, table, empty) for title, table, empty in sections)


def _section(title: str, table: Table, empty: str) -> str:
    if not table.rows:
        return f"{title}\n  ({empty})"
    return f"{title}\n{table.render()}"


def _count(title: str, shown: int, total: int | None = None) -> str:
    return (
        f"{title} ({shown} of {total})"
        if total is not None and total > shown
        else f"{title} ({shown})"
    )


_BAR_CELLS = 10


def _bar(used: int, capacity: int) -> str:
    """``[####------] 40%``: the capacity used, as the page's bar."""
    if capacity <= 0:
        return "-"
    share = min(1.0, max(0.0, used / capacity))
    filled = round(share * _BAR_CELLS)
    return f"[{'#' * filled}{'-' * (_BAR_CELLS - filled)}] {round(share * 100)}%"
