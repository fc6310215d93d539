"""``meshserve wait``: block until a resource meets a condition, as
``kubectl wait`` does.

``--for=condition=Ready`` waits for the status condition ``Ready`` to be
``True`` (``condition=Ready=False`` for another value; compared without
case, as kubectl does); ``--for=delete`` waits for the resource to be gone.
Only InferenceServices have conditions (KServe's ``Ready`` and
``PredictorReady``); a Predictor's v1alpha1 status has none.

The resource is read through the same access as ``get`` (the admin API, or
``--store``), every :data:`_POLL_S` until ``--timeout`` runs out: exit 0
when met, 1 (with what was last seen) when not.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import click

from meshserve.cli._client import ServerError
from meshserve.cli._resource_access import ResourceTarget, pass_resource_target
from meshserve.controller import ConditionStatus, find_condition, kind_of

__all__ = ["wait"]

_POLL_S = 0.5
"""How often the resource is read: the controller writes a status within a
pass (about a second) of a change, so reading more often only loads the
server."""

_WITH_CONDITIONS = ("InferenceService",)


@dataclasses.dataclass(frozen=True, slots=True)
class _Wanted:
    """What --for asks: a condition with a status, or (condition None) deletion."""

    condition: str | None
    status: str = str(ConditionStatus.TRUE)

    @classmethod
    def parse(cls, text: str) -> _Wanted:
        if text == "delete":
            return cls(condition=None)
        what, _, rest = text.partition("=")
        name, _, value = rest.partition("=")
        if what != "condition" or not name:
            raise click.BadParameter(
                f"{text!r}: expected condition=NAME[=VALUE] or delete", param_hint="--for"
            )
        return cls(condition=name, status=value or str(ConditionStatus.TRUE))

    def met_by(self, found: list[dict[str, Any]]) -> bool:
        if self.condition is None:
            return not found
        condition = find_condition(found[0].get("status") or {}, self.condition) or {}
        return str(condition.get("status", "")).lower() == self.status.lower()

    def describe(self) -> str:
        if self.condition is None:
            return "deletion"
        return f"condition {self.condition}={self.status}"


@click.command()
@click.argument("resource")
@click.argument("name", required=False)
@click.option(
    "--for",
    "wanted",
    required=True,
    metavar="condition=NAME[=VALUE]|delete",
    help="What to wait for: a status condition (VALUE defaults to True), or deletion.",
)
@click.option("-n", "--namespace", default="default", show_default=True)
@pass_resource_target
def wait(
    resource: str, name: str | None, wanted: str, namespace: str, target: ResourceTarget
) -> None:
    """Wait until KIND/NAME (or KIND NAME) meets --for, e.g. `meshserve wait
    --for=condition=Ready isvc/my-model --timeout 60s`. --timeout (seconds,
    or with a unit: 500ms, 30s, 2m) bounds the whole wait. Exit 0 when met;
    1 when the resource does not exist (for a condition) or the time ran out."""
    kind, name = _resource(resource, name)
    goal = _Wanted.parse(wanted)
    if goal.condition is not None and kind not in _WITH_CONDITIONS:
        raise click.BadParameter(
            f"a {kind} has no status conditions (only an InferenceService has: Ready, "
            "PredictorReady); wait for it with --for=delete, or read its status.available",
            param_hint="--for",
        )
    shown = f"{kind.lower()}/{name}"
    deadline = time.monotonic() + target.call_options.timeout_s
    with target.open() as resources:
        while True:
            found = resources.get(kind, namespace=namespace, name=name)
            if goal.condition is not None and not found:
                raise ServerError(f"NOT_FOUND: {shown} not found in namespace {namespace!r}")
            if goal.met_by(found):
                click.echo(f"{shown} {'deleted' if goal.condition is None else 'condition met'}")
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerError(
                    f"timed out waiting for {goal.describe()} on {shown}; last status: "
                    f"{_last_seen(found, goal)}"
                )
            time.sleep(min(_POLL_S, remaining))


def _resource(resource: str, name: str | None) -> tuple[str, str]:
    """KIND/NAME or KIND NAME, as kubectl takes them."""
    kind_text, slash, named = resource.partition("/")
    if slash and name is not None:
        raise click.UsageError("give KIND/NAME or KIND NAME, not both")
    name = named if slash else name
    if not name:
        raise click.UsageError("give KIND/NAME or KIND NAME (e.g. isvc/my-model)")
    try:
        return kind_of(kind_text), name
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from None


def _last_seen(found: list[dict[str, Any]], goal: _Wanted) -> str:
    if not found:
        return "none"
    if goal.condition is None:
        return "still there"
    condition = find_condition(found[0].get("status") or {}, goal.condition)
    if condition is None:
        return f"no {goal.condition} condition yet"
    parts = [f"{goal.condition}={condition.get('status')}"]
    parts += [f"{k}: {condition[k]}" for k in ("reason", "message") if condition.get(k)]
    return ", ".join(parts)
