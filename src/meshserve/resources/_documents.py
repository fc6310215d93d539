"""Resource documents in, resources out: YAML or JSON text, ``kind: List``,
and errors that name the document and the field."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import yaml
from pydantic import ValidationError

from meshserve.errors import InvalidResourceError
from meshserve.resources._inference_service import InferenceService
from meshserve.resources._predictor import Predictor
from meshserve.resources._secret import Secret
from meshserve.resources._serving_runtime import ClusterServingRuntime, ServingRuntime

__all__ = ["Manifest", "Resource", "load_documents", "load_manifest", "parse_resource"]

Resource: TypeAlias = ServingRuntime | ClusterServingRuntime | Predictor | InferenceService | Secret

_KINDS: dict[str, type[Resource]] = {
    "ServingRuntime": ServingRuntime,
    "ClusterServingRuntime": ClusterServingRuntime,
    "Predictor": Predictor,
    "InferenceService": InferenceService,
    "Secret": Secret,
}
_GROUP = "serving.kserve.io"


# --- parsing ------------------------------------------------------------------


def parse_resource(document: Mapping[str, Any], *, index: int | None = None) -> Resource:
    """Parse one resource document (already decoded from YAML or JSON).

    Raises InvalidResourceError naming the document ``index`` and the field.
    """
    if not isinstance(document, Mapping):
        raise InvalidResourceError(
            f"a resource must be a mapping, not {type(document).__name__}", document=index
        )
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        known = ", ".join(_KINDS)
        shown = "missing" if kind is None else repr(kind)
        raise InvalidResourceError(
            f"kind is {shown}; meshserve reads {known} (or a List of them)",
            field="kind",
            document=index,
        )
    try:
        return _KINDS[kind].model_validate(dict(document))
    except ValidationError as error:
        raise _resource_error(error, document=index) from None


def load_documents(text: str) -> list[Resource]:
    """Parse a multi-document YAML (or JSON) text into resources.

    Empty documents are skipped; ``kind: List`` documents are flattened. Errors
    name the document's index in the file (and the item's, inside a List).
    """
    return _load(text, skipped=None)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A file as ``kubectl apply -f`` reads it: the resources meshserve
    manages, and the other Kubernetes objects in it (``Kind/name``)."""

    resources: list[Resource]
    skipped: list[str]


def load_manifest(text: str) -> Manifest:
    """:func:`load_documents`, except that objects meshserve does not manage
    (a Service, a Deployment... of another API group than
    serving.kserve.io) are listed in ``skipped`` instead of refused; an
    unknown kind of serving.kserve.io is still an error."""
    skipped: list[str] = []
    return Manifest(_load(text, skipped=skipped), skipped)


def _load(text: str, *, skipped: list[str] | None) -> list[Resource]:
    resources: list[Resource] = []
    for index, document in _yaml_documents(text):
        if document is None:
            continue
        if isinstance(document, Mapping) and document.get("kind") == "List":
            items = document.get("items")
            if not isinstance(items, list):
                raise InvalidResourceError(
                    "a List must have a sequence of items", field="items", document=index
                )
            for position, item in enumerate(items):
                if skipped is not None and _foreign(item):
                    skipped.append(_kind_name(item))
                    continue
                try:
                    resources.append(parse_resource(item, index=index))
                except InvalidResourceError as error:
                    field = (
                        f"items[{position}].{error.field}" if error.field else f"items[{position}]"
                    )
                    raise InvalidResourceError(error.problem, field=field, document=index) from None
            continue
        if skipped is not None and _foreign(document):
            skipped.append(_kind_name(document))
            continue
        resources.append(parse_resource(document, index=index))
    return resources


def _foreign(document: Any) -> bool:
    """A Kubernetes object of a kind meshserve does not manage, outside
    its API group (a typo of one of its kinds is not foreign)."""
    if not isinstance(document, Mapping):
        return False
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if not isinstance(kind, str) or not kind or kind in _KINDS:
        return False
    return isinstance(api_version, str) and not api_version.startswith(_GROUP + "/")


def _kind_name(document: Mapping[str, Any]) -> str:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{document['kind']}/{name or '?'}"


def _yaml_documents(text: str) -> Iterator[tuple[int, Any]]:
    documents = yaml.safe_load_all(text)
    index = 0
    while True:
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(error, "problem", None) or str(error)
            raise InvalidResourceError(
                f"not valid YAML{where}: {problem}", document=index
            ) from None
        yield index, document
        index += 1


def _resource_error(error: ValidationError, *, document: int | None) -> InvalidResourceError:
    problems = []
    for detail in error.errors(include_url=False):
        field = _dotted(detail["loc"])
        message = detail["msg"]
        if detail["type"] == "string_type" and isinstance(detail.get("input"), int | float | bool):
            message += " (quote the value in YAML)"
        problems.append((field, message))
    first_field, first_message = problems[0]
    rest = "; ".join(f"{field}: {message}" for field, message in problems[1:])
    return InvalidResourceError(
        f"{first_message}; also {rest}" if rest else first_message,
        field=first_field,
        document=document,
    )


def _dotted(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path
