"""ModelMesh Serving's model-serving-etcd Secret handed to the store."""

from __future__ import annotations

import base64
import json
import pathlib
import stat

import pytest

from meshserve.errors import InvalidResourceError
from meshserve.operator._etcd_connection import etcd_store_settings
from meshserve.settings import StoreSettings
from meshserve.store._etcd_connection import with_etcd_connection


def _secret(connection: object, *, encoded: bool = True) -> dict[str, object]:
    text = connection if isinstance(connection, str) else json.dumps(connection)
    metadata = {"name": "model-serving-etcd", "namespace": "mm"}
    if encoded:
        data = {"etcd_connection": base64.b64encode(text.encode()).decode()}
        return {"metadata": metadata, "data": data}
    return {"metadata": metadata, "stringData": {"etcd_connection": text}}


@pytest.mark.parametrize("encoded", [True, False])
def test_the_upstream_json_becomes_the_store_settings(
    tmp_path: pathlib.Path, encoded: bool
) -> None:
    secret = _secret(
        {
            "endpoints": "https://etcd-0.etcd:2379,https://etcd-1.etcd:2379",
            "root_prefix": "modelmesh-serving",
            "userid": "root",
            "password": "s3cret-pw",
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        },
        encoded=encoded,
    )
    settings = etcd_store_settings(secret, base=StoreSettings(), files=tmp_path)
    assert settings.etcd_connection_file is not None
    assert stat.S_IMODE(settings.etcd_connection_file.stat().st_mode) == 0o600
    store = with_etcd_connection(settings, data_dir=tmp_path)
    assert store.url == "etcd://etcd-0.etcd:2379,etcd-1.etcd:2379"
    assert store.root_prefix == "modelmesh-serving"
    assert store.etcd_user == "root"
    assert store.etcd_password.get_secret_value() == "s3cret-pw"
    assert pathlib.Path(store.etcd_ca).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_a_secret_without_the_key_or_with_bad_base64_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(
        InvalidResourceError, match="mm/model-serving-etcd has no key etcd_connection"
    ):
        etcd_store_settings(
            {"metadata": {"name": "model-serving-etcd", "namespace": "mm"}, "data": {}},
            base=StoreSettings(),
            files=tmp_path,
        )
    with pytest.raises(InvalidResourceError, match=r"data\.etcd_connection is not base64"):
        etcd_store_settings(
            {"metadata": {"name": "model-serving-etcd"}, "data": {"etcd_connection": "@@"}},
            base=StoreSettings(),
            files=tmp_path,
        )
