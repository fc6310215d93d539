"""``meshserve operator``'s command line: what it needs, said clearly."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from meshserve.cli._main import cli


def test_outside_a_pod_without_a_kube_url_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(
        cli, ["operator", "--namespace", "mm", "--image", "meshserve:1"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "not in a Kubernetes pod" in result.output
    assert "--kube-url" in result.output


def test_the_namespace_and_image_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("MESHSERVE_IMAGE", raising=False)
    result = CliRunner().invoke(cli, ["operator", "--kube-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "--namespace" in result.output
