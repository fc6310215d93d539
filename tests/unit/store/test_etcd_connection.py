"""ModelMesh Serving's etcd_connection JSON (the model-serving-etcd Secret,
mounted as a file) becomes the store settings an instance connects with."""

from __future__ import annotations

import json
import pathlib

import pytest

from meshserve.settings import StoreSettings
from meshserve.store._etcd_connection import with_etcd_connection

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _file(tmp_path: pathlib.Path, document: object) -> StoreSettings:
    path = tmp_path / "etcd_connection"
    path.write_text(json.dumps(document))
    return StoreSettings(url="etcd://ignored:1", etcd_connection_file=path)


def test_the_connection_json_sets_endpoints_prefix_credentials_and_ca(
    tmp_path: pathlib.Path,
) -> None:
    settings = _file(
        tmp_path,
        {
            "endpoints": "https://etcd-0:2379,https://etcd-1:2379",
            "root_prefix": "modelmesh-serving",
            "userid": "root",
            "password": "s3cret",
            "certificate": PEM,
        },
    )
    resolved = with_etcd_connection(settings, data_dir=tmp_path / "data")
    assert resolved.url == "etcd://etcd-0:2379,etcd-1:2379"
    assert resolved.root_prefix == "modelmesh-serving"
    assert resolved.etcd_user == "root"
    assert resolved.etcd_password.get_secret_value() == "s3cret"
    ca = pathlib.Path(resolved.etcd_ca)
    assert ca.read_text() == PEM
    assert ca.stat().st_mode & 0o077 == 0


def test_certificate_files_are_used_where_they_are(tmp_path: pathlib.Path) -> None:
    settings = _file(
        tmp_path,
        {
            "endpoints": "http://etcd:2379",
            "certificate_file": "/ca.pem",
            "client_certificate_file": "/c.pem",
            "client_key_file": "/k.pem",
        },
    )
    resolved = with_etcd_connection(settings, data_dir=tmp_path)
    assert (resolved.etcd_ca, resolved.etcd_cert, resolved.etcd_key) == (
        "/ca.pem",
        "/c.pem",
        "/k.pem",
    )
    assert resolved.etcd_user == ""


def test_without_a_file_nothing_changes(tmp_path: pathlib.Path) -> None:
    settings = StoreSettings(url="etcd://e:2379")
    assert with_etcd_connection(settings, data_dir=tmp_path) is settings


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"endpoints": ""}, "endpoints is empty"),
        ({"endpoints": 5}, "endpoints must be a string"),
        ([1], "JSON object"),
    ],
)
def test_a_bad_file_is_named_and_its_values_are_not_echoed(
    tmp_path: pathlib.Path, document: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        with_etcd_connection(_file(tmp_path, document), data_dir=tmp_path)


def test_a_password_never_appears_in_an_error(tmp_path: pathlib.Path) -> None:
    settings = _file(tmp_path, {"endpoints": "http://e:2379", "userid": "u", "password": 12345678})
    with pytest.raises(ValueError) as caught:
        with_etcd_connection(settings, data_dir=tmp_path)
    assert "12345678" not in str(caught.value)
