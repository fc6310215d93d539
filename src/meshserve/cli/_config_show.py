"""``meshserve config show``: the effective settings and where each came from."""

from __future__ import annotations

import os
import pathlib
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import click
import orjson
import yaml
from click.core import ParameterSource
from pydantic import BaseModel, SecretStr

from meshserve._provenance import setting_paths
from meshserve.cli._output import Table, print_json
from meshserve.cli._serve_options import (
    overrides_from_flags,
    settings_options,
    settings_with_sources_from_flags,
)
from meshserve.settings import Settings, Source, setting_name

__all__ = ["show"]


@click.command(name="show")
@settings_options
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
)
def show(output: str, config: pathlib.Path | None, **flags: Any) -> None:
    """Print every setting, its effective value and its source (default,
    file, env VARIABLE, flag). Takes the flags of ``up``, so it shows what
    ``up`` would run with them. Secrets print as ***."""
    settings, sources = settings_with_sources_from_flags(config=config, **flags)
    sources.update(_flags_read_from_env(flags))
    rows = {
        setting_name(path): (_plain(_value(settings, path)), sources[setting_name(path)])
        for path in setting_paths(Settings)
    }
    if output == "table":
        table = Table(
            headers=("SETTING", "VALUE", "SOURCE"),
            rows=[(name, _cell(value), str(source)) for name, (value, source) in rows.items()],
        )
        click.echo(table.render())
        return
    data = {
        name: {"value": value, "source": source.kind, "origin": source.origin or None}
        for name, (value, source) in rows.items()
    }
    if output == "json":
        print_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


def _flags_read_from_env(flags: Mapping[str, Any]) -> dict[str, Source]:
    """Flags click filled from their own variable (``--etcd-password`` from
    ``MESHSERVE_ETCD_PASSWORD``) came from the environment, not a flag."""
    ctx = click.get_current_context()
    out: dict[str, Source] = {}
    for param in ctx.command.params:
        name = param.name
        if name not in flags or flags[name] is None:
            continue
        if ctx.get_parameter_source(name) is not ParameterSource.ENVIRONMENT:
            continue
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        variable = next((n for n in names if n in os.environ), ",".join(names))
        # The settings this one flag feeds: its overrides with every other flag unset.
        alone = overrides_from_flags(**{**dict.fromkeys(flags), name: flags[name]})
        for path in _set_paths(alone):
            out[setting_name(path)] = Source("env", variable)
    return out


def _set_paths(
    values: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _set_paths(value, (*prefix, key))
        elif value is not None:
            yield (*prefix, key)


def _value(settings: Settings, path: tuple[str, ...]) -> Any:
    """The setting at ``path``; inside an unset optional group (``tls`` when
    TLS is off) the field's default, or None where it has none."""
    node: Any = settings
    model: type[BaseModel] = Settings
    for part in path:
        info = model.model_fields[part]
        if node is not None:
            node = getattr(node, part)
        elif info.is_required():
            return None
        else:
            node = info.get_default(call_default_factory=True)
        for candidate in (info.annotation, *typing.get_args(info.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
    return node


def _plain(value: Any) -> Any:
    """JSON- and YAML-ready, secrets masked."""
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _cell(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    return orjson.dumps(value).decode()
