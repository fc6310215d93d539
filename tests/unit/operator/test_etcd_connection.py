"""ModelMesh Serving's model-serving-etcd Secret read as store settings."""

from __future__ import annotations

import base64
import json
import pathlib
import stat

import pytest

from meshserve.errors import InvalidResourceError
from meshserve.operator._etcd_connection import etcd_store_settings
from meshserve.settings import StoreSettings


def _secret(connection: object, *, encoded: bool = True) -> dict[str, object]:
    text = connection if isinstance(connection, str) else json.dumps(connection)
    metadata = {"name": "model-serving-etcd", "namespace": "mm"}
    if encoded:
        return {
            "metadata": metadata,
            "data": {"etcd_connection": base64.b64encode(text.encode()).decode()},
        }
    return {"metadata": metadata, "stringData": {"etcd_connection": text}}


def test_upstream_fields_become_the_store_settings(tmp_path: pathlib.Path) -> None:
    secret = _secret(
        {
            "endpoints": "https://etcd-0.etcd:2379, https://etcd-1.etcd:2379",
            "root_prefix": "modelmesh-serving",
            "userid": "root",
            "password": "s3cret-pw",
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        }
    )
    settings = etcd_store_settings(secret, base=StoreSettings(), files=tmp_path)
    assert settings.url == "etcd://etcd-0.etcd:2379,etcd-1.etcd:2379"
    assert settings.root_prefix == "modelmesh-serving"
    assert settings.etcd_user == "root"
    assert settings.etcd_password.get_secret_value() == "s3cret-pw"
    ca = pathlib.Path(settings.etcd_ca)
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(ca.stat().st_mode) == 0o600
    assert "s3cret-pw" not in repr(settings)


def test_string_data_and_no_credentials(tmp_path: pathlib.Path) -> None:
    settings = etcd_store_settings(
        _secret({"endpoints": "http://127.0.0.1:2379"}, encoded=False),
        base=StoreSettings(root_prefix="kept"),
        files=tmp_path,
    )
    assert settings.url == "etcd://127.0.0.1:2379"
    assert settings.root_prefix == "kept"
    assert settings.etcd_user == "" and settings.etcd_ca == ""


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        ("{not json", "is not JSON"),
        ({"root_prefix": "x"}, "endpoints names no etcd endpoint"),
        ({"endpoints": "h:1", "userid": "u"}, "userid and .password go together"),
        ({"endpoints": "h:1", "client_key": "k"}, "client_certificate and .client_key"),
    ],
)
def test_a_bad_connection_is_refused_naming_the_field_never_a_value(
    tmp_path: pathlib.Path, connection: object, expected: str
) -> None:
    with pytest.raises(InvalidResourceError, match=expected) as caught:
        etcd_store_settings(_secret(connection), base=StoreSettings(), files=tmp_path)
    assert "mm/model-serving-etcd" in str(caught.value)


def test_a_secret_without_the_key_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidResourceError, match="has no key etcd_connection"):
        etcd_store_settings(
            {"metadata": {"name": "model-serving-etcd"}, "data": {}},
            base=StoreSettings(),
            files=tmp_path,
        )
