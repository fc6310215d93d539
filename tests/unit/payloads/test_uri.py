"""payloads.processors parsed as ModelMesh writes them."""

from __future__ import annotations

import pathlib

import pytest

from meshserve.payloads import ProcessorSpec, parse_processors
from meshserve.settings import load_settings


def test_space_separated_uris_with_model_and_method_filters() -> None:
    specs = parse_processors("logger:///*  http://127.0.0.1:9000/sink?team-a%2Ffraud#ModelInfer\n")
    assert specs == (
        ProcessorSpec(scheme="logger", url="logger://"),
        ProcessorSpec(
            scheme="http",
            url="http://127.0.0.1:9000/sink",
            model="team-a/fraud",
            method="ModelInfer",
        ),
    )
    assert [spec.name for spec in specs] == ["logger", "remote"]
    remote = specs[1]
    method = "inference.GRPCInferenceService/ModelInfer"
    assert remote.wants("team-a/fraud", None, method)
    assert remote.wants("team-a/fraud__isvc-1", "team-a/fraud", method)
    assert not remote.wants("other", None, method)
    assert not remote.wants("team-a/fraud", None, "inference.GRPCInferenceService/ModelMetadata")
    assert specs[0].wants("anything", None, method)
    assert parse_processors("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka://broker:9092", "the scheme must be one of logger://, http://, https://"),
        ("http:///path", "no host"),
        ("https://user@127.0.0.1/x", "no credentials"),
    ],
)
def test_what_is_not_a_processor_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_processors(text)


def test_a_password_in_a_processor_uri_is_refused_and_not_repeated() -> None:
    with pytest.raises(ValueError) as refused:
        parse_processors("https://user:hunter2@127.0.0.1/x")
    assert "hunter2" not in str(refused.value)
    assert "user:***@127.0.0.1" in str(refused.value)


def test_the_model_serving_config_key_sets_the_processors(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('podsPerRuntime: 1\npayloadProcessors: "logger:// http://127.0.0.1:1/x"\n')
    assert load_settings(config_file=config).payloads.processors == (
        "logger:// http://127.0.0.1:1/x"
    )


def test_settings_refuse_a_processor_uri_without_repeating_its_password(
    tmp_path: pathlib.Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("payloads:\n  processors: https://user:hunter2@127.0.0.1/x\n")
    with pytest.raises(ValueError) as refused:
        load_settings(config_file=config)
    assert "payloads.processors" in str(refused.value)
    assert "no credentials" in str(refused.value)
    assert "hunter2" not in str(refused.value)
