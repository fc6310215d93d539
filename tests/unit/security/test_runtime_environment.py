"""What a runtime process inherits of the instance's environment."""

from __future__ import annotations

from meshserve.security import runtime_environment


def test_secrets_and_the_instances_own_settings_stay_behind() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/meshserve",
        "PYTHONPATH": "/src",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MESHSERVE_RUNTIME__CAPACITY_BYTES": "1000",
        "MESHSERVE_LOG_LEVEL": "debug",
        "MESHSERVE_SECURITY__SEALING_KEY": "k" * 64,
        "MESHSERVE_STORE__ETCD_PASSWORD": "p",
        "MESHSERVE_ETCD_PASSWORD": "p",
        "MESHSERVE_TOKEN": "t",
        "MESHSERVE_MESH__SECRET_FILE": "/data/mesh.secret",
        "MESHSERVE_AUTH__TOKENS_FILE": "/etc/tokens.yaml",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ACCESS_KEY_ID": "a",
        "AZURE_STORAGE_CONNECTION_STRING": "c",
        "GOOGLE_APPLICATION_CREDENTIALS": "/creds.json",
        "GITHUB_TOKEN": "g",
        "ETCDCTL_PASSWORD": "e",
        "DB_Password": "mixed case",
    }
    assert runtime_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/meshserve",
        "PYTHONPATH": "/src",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MESHSERVE_RUNTIME__CAPACITY_BYTES": "1000",
        "MESHSERVE_LOG_LEVEL": "debug",
    }


def test_the_runtime_traces_to_the_collector_without_its_credentials() -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_SERVICE_NAME": "mesh",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer x",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=y",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/etc/client.key",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/etc/client.key",
    }
    assert runtime_environment(environ) == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_SERVICE_NAME": "mesh",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
    }
