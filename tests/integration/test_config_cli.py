"""``meshserve config show`` as a user runs it: a subprocess with a config
file and an environment variable."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

# A model-serving-config as a cluster has it (trimmed), applied unchanged.
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: model-serving-config
data:
  config.yaml: |
    podsPerRuntime: 1
    scaleToZero:
      gracePeriodSeconds: 2
    restProxy:
      enabled: true
      port: 9008
    metrics:
      enabled: false
    runtimePodLabels:
      app: myApp
    serviceAccountName: modelmesh
"""


def _show(
    tmp_path: pathlib.Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "meshserve", "config", "show", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**clean, **env},
        check=False,
    )


def test_config_show_names_each_source(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "model-serving-config.yaml"
    config.write_text(CONFIGMAP)
    result = _show(
        tmp_path,
        "--config",
        str(config),
        "--metrics-port",
        "0",
        "-o",
        "json",
        env={"MESHSERVE_CONTROL__SCALE_TO_ZERO_GRACE_PERIOD_S": "0.5"},
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["control.podsPerRuntime"] == {
        "value": 1,
        "source": "file",
        "origin": "podsPerRuntime",
    }
    assert shown["control.scaleToZeroGracePeriodS"] == {
        "value": 0.5,
        "source": "env",
        "origin": "MESHSERVE_CONTROL__SCALE_TO_ZERO_GRACE_PERIOD_S",
    }
    assert shown["metrics.enabled"]["value"] is False
    assert shown["metrics.port"] == {"value": 0, "source": "flag", "origin": None}
    assert shown["server.restPort"]["value"] == 9008
    assert shown["control.scaleToZeroEnabled"] == {
        "value": True,
        "source": "default",
        "origin": None,
    }
    # Keys meshserve does not act on are named on stderr, not refused.
    assert "runtimePodLabels, serviceAccountName" in result.stderr


def test_config_show_table_of_a_meshserve_file(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "meshserve.yaml"
    config.write_text("server: {grpcPort: 9300}\nstore: {etcdPassword: hunter2-secret}\n")
    result = _show(
        tmp_path,
        "--config",
        str(config),
        env={"MESHSERVE_SERVER__GRPC_PORT": "9301"},
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["server.grpcPort"] == ["9301", "env", "MESHSERVE_SERVER__GRPC_PORT"]
    assert rows["store.etcdPassword"] == ["***", "file"]
    assert rows["server.restPort"] == ["8008", "default"]
    assert "hunter2" not in result.stdout + result.stderr


def test_config_show_refuses_an_unknown_setting(tmp_path: pathlib.Path) -> None:
    config = tmp_path / "meshserve.yaml"
    config.write_text("server: {grpcPrt: 1}\n")
    result = _show(tmp_path, "--config", str(config), env={})
    assert result.returncode == 2
    assert "grpc_prt" in result.stderr
