"""Where settings come from (load_settings_with_sources), ModelMesh Serving's
model-serving-config as a config file, and ``meshserve config show``."""

from __future__ import annotations

import json
import logging
import pathlib
import textwrap

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from meshserve.cli._config import config as config_group
from meshserve.settings import Source, load_settings, load_settings_with_sources

# Variables a test may set; cleared so the developer's environment cannot leak in.
_ENV = (
    "MESHSERVE_SERVER__GRPC_PORT",
    "MESHSERVE_RUNTIME__CAPACITY_BYTES",
    "MESHSERVE_STORE__ETCD_PASSWORD",
    "MESHSERVE_ETCD_PASSWORD",
    "MESHSERVE_AUTH__MTLS_IDENTITIES",
    "MESHSERVE_CONTROL__PODS_PER_RUNTIME",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_each_source_and_their_precedence(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(
        tmp_path / "meshserve.yaml",
        """
        server: {grpcPort: 9001, restPort: 9002}
        runtime: {modelLoadingTimeoutMillis: 5000, capacityBytes: 111}
        """,
    )
    monkeypatch.setenv("MESHSERVE_SERVER__GRPC_PORT", "9101")
    monkeypatch.setenv("MESHSERVE_RUNTIME__CAPACITY_BYTES", "222")
    settings, sources = load_settings_with_sources(
        config_file=config, overrides={"runtime": {"capacity_bytes": 333, "host": None}}
    )
    assert settings.server.rest_port == 9002
    assert sources["server.restPort"] == Source("file")
    assert settings.runtime.model_loading_timeout_ms == 5000
    assert sources["runtime.modelLoadingTimeoutMillis"] == Source("file")
    # env over file, named by its variable
    assert settings.server.grpc_port == 9101
    assert sources["server.grpcPort"] == Source("env", "MESHSERVE_SERVER__GRPC_PORT")
    # flag over env (and over file)
    assert settings.runtime.capacity_bytes == 333
    assert sources["runtime.capacityBytes"] == Source("flag")
    # an unset flag (None) is no source
    assert settings.runtime.host == "inprocess"
    assert sources["runtime.host"] == Source("default")
    assert sources["metrics.port"] == Source("default")
    assert str(sources["server.grpcPort"]) == "env MESHSERVE_SERVER__GRPC_PORT"


def test_sources_name_every_setting_as_the_readme_does() -> None:
    readme = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    table = readme.split("| setting | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    _, sources = load_settings_with_sources()
    assert set(sources) == documented
    assert {source.kind for source in sources.values()} == {"default"}


def test_env_holding_a_dict_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHSERVE_AUTH__MTLS_IDENTITIES", '{"client-cn": "alice"}')
    settings, sources = load_settings_with_sources()
    assert settings.auth.mtls_identities == {"client-cn": "alice"}
    assert sources["auth.mtlsIdentities"] == Source("env", "MESHSERVE_AUTH__MTLS_IDENTITIES")


def test_load_settings_is_the_same_merge(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path / "c.yaml", "control: {podsPerRuntime: 4}\n")
    monkeypatch.setenv("MESHSERVE_SERVER__GRPC_PORT", "9101")
    overrides = {"metrics": {"port": 0}}
    settings, _ = load_settings_with_sources(config_file=config, overrides=overrides)
    assert load_settings(config_file=config, overrides=overrides) == settings
    assert settings.control.pods_per_runtime == 4


def test_control_defaults_match_model_serving_config() -> None:
    control = load_settings().control
    assert control.pods_per_runtime == 2
    assert control.scale_to_zero_enabled is True
    assert control.scale_to_zero_grace_period_s == 60


MODEL_SERVING_CONFIG = """
    podsPerRuntime: 3
    scaleToZero:
      enabled: false
      gracePeriodSeconds: 5
    grpcMaxMessageSizeBytes: 33554432
    inferenceServiceName: my-serving
    restProxy:
      enabled: false
      port: 9008
      image: {name: kserve/rest-proxy, tag: v0.11.0}
    metrics: {enabled: true, port: 2113, scheme: http}
    storageSecretName: storage-config
    modelMeshImage: {name: kserve/modelmesh, tag: v0.11.0}
    modelMeshResources: {requests: {cpu: 300m}}
    serviceAccountName: modelmesh
    builtInServerTypes: [triton, mlserver]
    podsPerRuntme: 9
    """


def test_model_serving_config_maps_onto_settings(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _write(tmp_path / "config.yaml", MODEL_SERVING_CONFIG)
    with caplog.at_level(logging.WARNING, logger="meshserve.settings"):
        settings, sources = load_settings_with_sources(config_file=config)
    assert settings.control.pods_per_runtime == 3
    assert settings.control.scale_to_zero_enabled is False
    assert settings.control.scale_to_zero_grace_period_s == 5
    assert settings.server.grpc_max_message_size_bytes == 32 * 1024**2
    assert settings.server.rest_enabled is False
    assert settings.server.rest_port == 9008
    assert settings.store.service_name == "my-serving"
    assert (settings.metrics.enabled, settings.metrics.port) == (True, 2113)
    assert settings.storage.config_path == tmp_path / "storage-config"
    assert settings.tls is None
    assert sources["control.scaleToZeroGracePeriodS"] == Source(
        "file", "scaleToZero.gracePeriodSeconds"
    )
    assert sources["server.restEnabled"] == Source("file", "restProxy.enabled")
    assert sources["server.grpcPort"] == Source("default")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    ignored = next(w for w in warnings if "no use for" in w)
    for key in (
        "restProxy.image",
        "modelMeshImage",
        "modelMeshResources",
        "serviceAccountName",
        "builtInServerTypes",
    ):
        assert key in ignored
    assert "podsPerRuntme" not in ignored
    unknown = next(w for w in warnings if "not model-serving-config keys" in w)
    assert unknown.endswith("(ignored): podsPerRuntme")
    assert str(config) in unknown


def test_configmap_manifest_and_case_insensitive_keys(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _write(
        tmp_path / "model-serving-config.yaml",
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: model-serving-config}
        data:
          config.yaml: |
            PODSPERRUNTIME: 5
            restproxy: {Enabled: false}
        """,
    )
    with caplog.at_level(logging.WARNING, logger="meshserve.settings"):
        settings, sources = load_settings_with_sources(config_file=config)
    assert settings.control.pods_per_runtime == 5
    assert settings.server.rest_enabled is False
    assert sources["control.podsPerRuntime"] == Source("file", "PODSPERRUNTIME")
    assert caplog.records == []


def test_env_and_flags_override_a_model_serving_config(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write(tmp_path / "config.yaml", "podsPerRuntime: 3\ninferenceServicePort: 9033\n")
    monkeypatch.setenv("MESHSERVE_CONTROL__PODS_PER_RUNTIME", "4")
    settings, sources = load_settings_with_sources(
        config_file=config, overrides={"server": {"grpc_port": 0}}
    )
    assert settings.control.pods_per_runtime == 4
    assert sources["control.podsPerRuntime"] == Source("env", "MESHSERVE_CONTROL__PODS_PER_RUNTIME")
    assert settings.server.grpc_port == 0
    assert sources["server.grpcPort"] == Source("flag")


def _tls_secret(directory: pathlib.Path, *, with_ca: bool) -> pathlib.Path:
    directory.mkdir()
    for name in ("tls.crt", "tls.key", *(("ca.crt",) if with_ca else ())):
        (directory / name).write_text("PEM\n")
    return directory


def test_tls_secret_name_is_a_directory_beside_the_file(tmp_path: pathlib.Path) -> None:
    secret = _tls_secret(tmp_path / "mm-tls", with_ca=True)
    config = _write(tmp_path / "config.yaml", "tls: {secretName: mm-tls, clientAuth: require}\n")
    settings, sources = load_settings_with_sources(config_file=config)
    assert settings.tls is not None
    assert settings.tls.cert_file == secret / "tls.crt"
    assert settings.tls.key_file == secret / "tls.key"
    assert settings.tls.ca_file == secret / "ca.crt"
    assert settings.tls.client_auth == "require"
    assert sources["tls.certFile"] == Source("file", "tls.secretName")
    assert sources["tls.clientAuth"] == Source("file", "tls.clientAuth")
    assert sources["tls.reloadIntervalS"] == Source("default")


def test_tls_client_auth_needs_the_ca_and_the_secret(tmp_path: pathlib.Path) -> None:
    _tls_secret(tmp_path / "no-ca", with_ca=False)
    config = _write(tmp_path / "config.yaml", "tls: {secretName: no-ca, clientAuth: optional}\n")
    with pytest.raises(ValueError, match=r"no-ca/ca\.crt to verify clients"):
        load_settings(config_file=config)
    config.write_text("podsPerRuntime: 2\ntls: {clientAuth: require}\n")
    with pytest.raises(ValueError, match=r"needs tls\.secretName"):
        load_settings(config_file=config)
    # without clientAuth, a Secret without ca.crt is fine (server TLS only)
    config.write_text("tls: {secretName: no-ca}\n")
    settings = load_settings(config_file=config)
    assert settings.tls is not None
    assert settings.tls.ca_file is None


def test_https_metrics_without_a_certificate_is_a_warning_in_modelmesh_files(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ModelMesh makes up a certificate; its file keeps working here, over http.
    config = _write(
        tmp_path / "config.yaml", "podsPerRuntime: 1\nmetrics: {port: 2114, scheme: https}\n"
    )
    with caplog.at_level(logging.WARNING, logger="meshserve.settings"):
        settings = load_settings(config_file=config)
    assert (settings.metrics.port, settings.metrics.scheme) == (2114, "http")
    assert [r.getMessage() for r in caplog.records] == [
        f"{config}: metrics.scheme: https needs tls.secretName (the certificate to serve); "
        "metrics are served over plain http"
    ]


def test_https_metrics_with_the_tls_secret(tmp_path: pathlib.Path) -> None:
    _tls_secret(tmp_path / "mm-tls", with_ca=True)
    config = _write(
        tmp_path / "config.yaml", "tls: {secretName: mm-tls}\nmetrics: {scheme: HTTPS}\n"
    )
    settings, sources = load_settings_with_sources(config_file=config)
    assert settings.metrics.scheme == "https"
    assert sources["metrics.scheme"] == Source("file", "metrics.scheme")


def test_https_metrics_without_tls_are_refused_in_meshserve_files(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path / "meshserve.yaml", "metrics: {port: 2114, scheme: https}\n")
    with pytest.raises(ValidationError, match=r"metrics\.scheme https needs tls"):
        load_settings(config_file=config)
    config.write_text("metrics: {enabled: false, scheme: https}\n")  # nothing served: fine
    assert load_settings(config_file=config).metrics.scheme == "https"


def test_access_logging_and_per_model_metrics_map_from_modelmesh_keys(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _write(
        tmp_path / "config.yaml", "enableAccessLogging: true\nmetrics: {perModel: true}\n"
    )
    with caplog.at_level(logging.WARNING, logger="meshserve.settings"):
        settings, sources = load_settings_with_sources(config_file=config)
    assert settings.server.access_logging is True
    assert settings.metrics.per_model is True
    assert sources["server.accessLogging"] == Source("file", "enableAccessLogging")
    assert sources["metrics.perModel"] == Source("file", "metrics.perModel")
    assert caplog.records == []  # neither is "ignored" any more


def test_access_logging_and_per_model_metrics_are_off_by_default() -> None:
    settings = load_settings()
    assert settings.server.access_logging is False  # ModelMesh's default
    assert settings.metrics.per_model is False
    assert settings.metrics.scheme == "http"


def test_meshserve_files_keep_their_meaning(tmp_path: pathlib.Path) -> None:
    # Only keys both shapes share (metrics, tls) in meshserve's spelling.
    (tmp_path / "c.pem").write_text("PEM\n")
    config = _write(
        tmp_path / "meshserve.yaml",
        f"""
        metrics: {{port: 2115, host: 127.0.0.2}}
        tls: {{certFile: {tmp_path / "c.pem"}, keyFile: {tmp_path / "c.pem"}}}
        """,
    )
    settings, sources = load_settings_with_sources(config_file=config)
    assert settings.metrics.host == "127.0.0.2"
    assert settings.tls is not None
    assert settings.tls.cert_file == tmp_path / "c.pem"
    assert sources["tls.certFile"] == Source("file")


def test_unknown_key_in_a_meshserve_file_is_still_refused(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path / "bad.yaml", "runtime: {capacityBites: 1}\n")
    with pytest.raises(ValidationError, match="capacity_bites"):
        load_settings(config_file=config)
    config.write_text("control: {podsPerRuntme: 1}\n")
    with pytest.raises(ValidationError, match="pods_per_runtme"):
        load_settings(config_file=config)


def test_mixing_the_two_shapes_is_refused(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path / "mixed.yaml", "server: {grpcPort: 1}\npodsPerRuntime: 2\n")
    with pytest.raises(
        ValueError,
        match=r"mixes meshserve settings \(server\) with "
        r"model-serving-config keys \(podsPerRuntime\)",
    ):
        load_settings(config_file=config)


def _show(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(config_group, ["show", "-o", "json", *args], env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, dict[str, object]] = json.loads(result.output)
    return data


def test_show_reports_values_and_sources(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path / "config.yaml", "podsPerRuntime: 3\n")
    shown = _show(
        "--config",
        str(config),
        "--grpc-port",
        "9200",
        env={"MESHSERVE_RUNTIME__CAPACITY_BYTES": "4096"},
    )
    assert shown["control.podsPerRuntime"] == {
        "value": 3,
        "source": "file",
        "origin": "podsPerRuntime",
    }
    assert shown["runtime.capacityBytes"] == {
        "value": 4096,
        "source": "env",
        "origin": "MESHSERVE_RUNTIME__CAPACITY_BYTES",
    }
    assert shown["server.grpcPort"] == {"value": 9200, "source": "flag", "origin": None}
    assert shown["dataDir"] == {"value": ".meshserve", "source": "default", "origin": None}
    assert shown["tls.certFile"] == {"value": None, "source": "default", "origin": None}


def test_show_masks_secrets() -> None:
    assert _show()["store.etcdPassword"]["value"] == ""
    shown = _show(env={"MESHSERVE_STORE__ETCD_PASSWORD": "hunter2-secret"})
    assert shown["store.etcdPassword"] == {
        "value": "***",
        "source": "env",
        "origin": "MESHSERVE_STORE__ETCD_PASSWORD",
    }
    # The flag's own variable is the environment too, not a flag.
    shown = _show(env={"MESHSERVE_ETCD_PASSWORD": "hunter2-secret"})
    assert shown["store.etcdPassword"] == {
        "value": "***",
        "source": "env",
        "origin": "MESHSERVE_ETCD_PASSWORD",
    }
    for args in ((), ("-o", "table"), ("-o", "yaml")):
        result = CliRunner().invoke(
            config_group,
            ["show", *args, "--etcd-password", "hunter2-secret"],
        )
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output
        assert "***" in result.output


def test_show_table_and_yaml(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path / "config.yaml", "restProxy: {enabled: false}\n")
    table = CliRunner().invoke(config_group, ["show", "--config", str(config)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["SETTING", "VALUE", "SOURCE"]
    assert ["server.restEnabled", "false", "file", "restProxy.enabled"] in [
        line.split() for line in lines
    ]
    shown = CliRunner().invoke(config_group, ["show", "-o", "yaml", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "server.restEnabled:\n  value: false\n  source: file\n  origin: restProxy.enabled\n" in (
        shown.output
    )


def test_show_refuses_a_bad_file_as_a_usage_error(tmp_path: pathlib.Path) -> None:
    config = _write(tmp_path / "bad.yaml", "runtime: {capacityBites: 1}\n")
    result = CliRunner().invoke(config_group, ["show", "--config", str(config)])
    assert result.exit_code == 2
    assert "capacity_bites" in result.output
