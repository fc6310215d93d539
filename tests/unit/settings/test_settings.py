import pathlib
import typing

import pytest
from pydantic import ValidationError

from meshserve.settings import RuntimeSettings, Settings, load_settings


def test_defaults_match_modelmesh() -> None:
    runtime = Settings().runtime
    assert runtime.model_loading_timeout_ms == 90_000
    assert runtime.max_loading_concurrency == 1
    assert runtime.default_model_size_bytes == 1_000_000
    assert runtime.allow_pickle is False
    assert runtime.host == "inprocess"


def test_file_then_env_then_flags(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "meshserve.yaml"
    config.write_text(
        "runtime:\n  capacityBytes: 111\n  modelLoadingTimeoutMillis: 5\n  allow_pickle: true\n"
    )
    assert load_settings(config_file=config).runtime.capacity_bytes == 111
    monkeypatch.setenv("MESHSERVE_RUNTIME__CAPACITY_BYTES", "222")
    settings = load_settings(config_file=config)
    assert settings.runtime.capacity_bytes == 222
    assert settings.runtime.model_loading_timeout_ms == 5
    assert settings.runtime.allow_pickle is True
    flagged = load_settings(
        config_file=config, overrides={"runtime": {"capacity_bytes": 333, "host": None}}
    )
    assert flagged.runtime.capacity_bytes == 333
    assert flagged.runtime.host == "inprocess"


def test_unknown_and_invalid_values_are_refused(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("runtime:\n  capacityBites: 1\n")
    with pytest.raises(ValidationError, match="capacity_bites"):
        load_settings(config_file=config)
    with pytest.raises(ValidationError):
        RuntimeSettings(capacity_bytes=0)
    config.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_settings(config_file=config)


def test_every_setting_in_the_readme_exists_and_every_setting_is_documented() -> None:
    from pydantic import BaseModel
    from pydantic.alias_generators import to_snake

    from meshserve.settings._loader import _ALIASES

    readme = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    table = readme.split("| setting | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    known: set[str] = set()

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            # A group may be optional (``TlsSettings | None``): walk the model in it.
            candidates = (field.annotation, *typing.get_args(field.annotation))
            groups = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
            if groups:
                walk(groups[0], f"{prefix}{name}.")
            else:
                known.add(prefix + name)

    walk(Settings, "")
    as_fields = {
        ".".join(_ALIASES.get(part, to_snake(part)) for part in key.split("."))
        for key in documented
    }
    assert as_fields == known


_DOCUMENTED_AUTH = """
auth:
  enabled: true
  tokensFile: /etc/meshserve/tokens.yaml
  mtlsIdentities:          # client certificate CN -> principal name
    billing-svc: billing
  reloadIntervalS: 5
"""


@pytest.mark.parametrize(
    "text",
    [
        _DOCUMENTED_AUTH,
        _DOCUMENTED_AUTH.replace("mtlsIdentities", "mtls_identities").replace(
            "billing-svc: billing\n",
            "billing-svc: billing\n    BillingSvc: b2\n    billing_svc: b3\n",
        ),
    ],
    ids=["docs-example", "snake-case-and-look-alikes"],
)
def test_mapping_settings_keep_their_keys_as_written_in_a_file(
    tmp_path: pathlib.Path, text: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text + "runtime:\n  commandEnv:\n    MY_VAR: a\n    someVar: b\n")
    settings = load_settings(config_file=config)
    assert settings.auth.mtls_identities["billing-svc"] == "billing"
    if "BillingSvc" in text:
        assert settings.auth.mtls_identities == {
            "billing-svc": "billing",
            "BillingSvc": "b2",
            "billing_svc": "b3",
        }
    assert settings.runtime.command_env == {"MY_VAR": "a", "someVar": "b"}
    assert settings.auth.reload_interval_s == 5  # setting names are still respelled


def test_mapping_settings_keep_their_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "MESHSERVE_AUTH__MTLS_IDENTITIES", '{"billing-svc": "billing", "Payments.CN": "pay"}'
    )
    settings = load_settings()
    assert settings.auth.mtls_identities == {"billing-svc": "billing", "Payments.CN": "pay"}


def test_namespace_ports_keep_their_namespaces_and_refuse_bad_ports(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().server.namespace_ports == {}
    config = tmp_path / "meshserve.yaml"
    config.write_text("server:\n  namespacePorts:\n    modelmesh-serving: 8034\n    teamA: 0\n")
    ports = load_settings(config_file=config).server.namespace_ports
    assert ports == {"modelmesh-serving": 8034, "teamA": 0}
    monkeypatch.setenv("MESHSERVE_SERVER__NAMESPACE_PORTS", '{"modelmesh-serving": 70000}')
    with pytest.raises(ValidationError, match=r"namespace_ports\.modelmesh-serving"):
        load_settings()
