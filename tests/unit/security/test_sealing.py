"""Sealing Secret values: AES-256-GCM bound to namespace/name/key, and the key's sources."""

from __future__ import annotations

import base64
import os
import pathlib
import stat

import pytest
from pydantic import SecretStr

from meshserve.security import (
    SEALING_KEY_FILE,
    SealContext,
    SealingKey,
    SealingKeyError,
    UnsealError,
    load_sealing_key,
    sealed_size,
)
from meshserve.settings import SecuritySettings

VALUE = b'{"type": "s3", "secret_access_key": "very-secret-value"}'
CONTEXT = SealContext(namespace="team-a", name="storage-config", item="s3")
KEY_BYTES = bytes(range(32))


def test_a_sealed_value_unseals_to_itself_and_holds_no_clear_text() -> None:
    key = SealingKey(KEY_BYTES)
    token = key.seal(VALUE, context=CONTEXT)
    assert key.unseal(token, context=CONTEXT) == VALUE
    assert token.startswith(f"ms1:{key.key_id}:")
    assert b"very-secret-value" not in token.encode()
    assert sealed_size(token) == len(VALUE)
    # A fresh nonce each time: the same value never seals the same twice.
    assert key.seal(VALUE, context=CONTEXT) != token


def test_a_tampered_value_is_refused() -> None:
    key = SealingKey(KEY_BYTES)
    token = key.seal(VALUE, context=CONTEXT)
    prefix, body = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    for position in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        forged = f"{prefix}:{base64.urlsafe_b64encode(bytes(flipped)).decode()}"
        with pytest.raises(UnsealError, match="does not verify"):
            key.unseal(forged, context=CONTEXT)
    truncated = f"{prefix}:{base64.urlsafe_b64encode(bytes(raw[:20])).decode()}"
    with pytest.raises(UnsealError, match="too short"):
        key.unseal(truncated, context=CONTEXT)


@pytest.mark.parametrize(
    "other",
    [
        SealContext(namespace="team-b", name="storage-config", item="s3"),
        SealContext(namespace="team-a", name="other-secret", item="s3"),
        SealContext(namespace="team-a", name="storage-config", item="gcs"),
        # The fields are kept apart: shifting text from one to another is another context.
        SealContext(namespace="team-a", name="storage-configs", item="3"),
    ],
)
def test_a_value_is_bound_to_its_namespace_name_and_key(other: SealContext) -> None:
    key = SealingKey(KEY_BYTES)
    token = key.seal(VALUE, context=CONTEXT)
    with pytest.raises(UnsealError, match="another secret or key"):
        key.unseal(token, context=other)


def test_another_key_is_refused_by_its_id() -> None:
    token = SealingKey(KEY_BYTES).seal(VALUE, context=CONTEXT)
    other = SealingKey.generate()
    with pytest.raises(UnsealError, match="another sealing key") as info:
        other.unseal(token, context=CONTEXT)
    assert SealingKey(KEY_BYTES).key_id in str(info.value)
    assert other.key_id in str(info.value)


def test_another_key_with_a_forged_id_still_does_not_unseal() -> None:
    token = SealingKey(KEY_BYTES).seal(VALUE, context=CONTEXT)
    other = SealingKey.generate()
    _, _, body = token.split(":", 2)
    with pytest.raises(UnsealError, match="does not verify"):
        other.unseal(f"ms1:{other.key_id}:{body}", context=CONTEXT)


@pytest.mark.parametrize("token", ["", "plain text", "ms2:abcd:AAAA", "ms1::AAAA", "ms1:ab:%%%"])
def test_what_is_not_a_sealed_value_is_refused(token: str) -> None:
    with pytest.raises(UnsealError):
        SealingKey(KEY_BYTES).unseal(token, context=CONTEXT)


def test_keys_parse_from_hex_and_base64_and_never_echo_the_text() -> None:
    hex_key = KEY_BYTES.hex()
    expected = SealingKey(KEY_BYTES).key_id
    assert SealingKey.from_text(hex_key, source="t").key_id == expected
    assert SealingKey.from_text(f"  {hex_key.upper()}\n", source="t").key_id == expected
    assert SealingKey.from_text(base64.b64encode(KEY_BYTES).decode(), source="t").key_id == expected
    urlsafe = base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode()
    assert "-" in urlsafe or "_" in urlsafe
    assert SealingKey.from_text(urlsafe, source="t").key_id == SealingKey(bytes([0xFB] * 32)).key_id
    for bad in (
        "00" * 16,
        "not-a-key-at-all-but-quite-long-text",
        base64.b64encode(b"x" * 31).decode(),
    ):
        with pytest.raises(SealingKeyError, match="32 bytes as hex") as info:
            SealingKey.from_text(bad, source="the test")
        assert bad not in str(info.value)
        assert "the test" in str(info.value)
    with pytest.raises(SealingKeyError, match="32 bytes"):
        SealingKey(b"short")
    assert hex_key not in repr(SealingKey(KEY_BYTES))


def _key_file(path: pathlib.Path, mode: int, text: str | None = None) -> pathlib.Path:
    path.write_text(text if text is not None else KEY_BYTES.hex() + "\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_key_file_of_its_owner_alone_is_read(tmp_path: pathlib.Path, mode: int) -> None:
    path = _key_file(tmp_path / "key", mode)
    assert SealingKey.from_file(path).key_id == SealingKey(KEY_BYTES).key_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_key_file_others_may_read_is_refused(tmp_path: pathlib.Path, mode: int) -> None:
    path = _key_file(tmp_path / "key", mode)
    with pytest.raises(SealingKeyError, match=f"mode {mode:04o}.*0600 or stricter"):
        SealingKey.from_file(path)


def test_a_missing_or_odd_key_file_is_refused_clearly(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SealingKeyError, match="No such file"):
        SealingKey.from_file(tmp_path / "missing")
    with pytest.raises(SealingKeyError, match="not a regular file"):
        SealingKey.from_file(tmp_path)
    with pytest.raises(SealingKeyError, match="not a sealing key"):
        SealingKey.from_file(_key_file(tmp_path / "bad", 0o600, "nonsense\n"))


def test_the_settings_give_the_key_from_the_value_or_the_file(tmp_path: pathlib.Path) -> None:
    path = _key_file(tmp_path / "key", 0o600)
    expected = SealingKey(KEY_BYTES).key_id
    by_file = load_sealing_key(SecuritySettings(sealing_key_file=path), data_dir=tmp_path)
    by_value = load_sealing_key(
        SecuritySettings(sealing_key=SecretStr(KEY_BYTES.hex())), data_dir=tmp_path
    )
    assert by_file is not None and by_file.key_id == expected
    assert by_value is not None and by_value.key_id == expected
    with pytest.raises(SealingKeyError, match="set one") as info:
        load_sealing_key(
            SecuritySettings(sealing_key_file=path, sealing_key=SecretStr(KEY_BYTES.hex())),
            data_dir=tmp_path,
        )
    assert KEY_BYTES.hex() not in str(info.value)
    with pytest.raises(SealingKeyError, match="MESHSERVE_SECURITY__SEALING_KEY"):
        load_sealing_key(SecuritySettings(sealing_key=SecretStr("oops")), data_dir=tmp_path)


def test_the_env_variable_reaches_the_setting(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meshserve.settings import load_settings

    monkeypatch.setenv("MESHSERVE_SECURITY__SEALING_KEY", KEY_BYTES.hex())
    settings = load_settings()
    key = load_sealing_key(settings.security, data_dir=tmp_path)
    assert key is not None and key.key_id == SealingKey(KEY_BYTES).key_id
    assert KEY_BYTES.hex() not in repr(settings)


def test_up_makes_one_key_in_the_data_dir_and_later_processes_read_it(
    tmp_path: pathlib.Path,
) -> None:
    data_dir = tmp_path / "data"
    assert load_sealing_key(SecuritySettings(), data_dir=data_dir) is None
    made = load_sealing_key(SecuritySettings(), data_dir=data_dir, create=True)
    path = data_dir / SEALING_KEY_FILE
    assert made is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_sealing_key(SecuritySettings(), data_dir=data_dir, create=True)
    read = load_sealing_key(SecuritySettings(), data_dir=data_dir)
    assert again is not None and read is not None
    assert made.key_id == again.key_id == read.key_id
    assert [p.name for p in data_dir.iterdir()] == [SEALING_KEY_FILE]  # no temporary left


def test_a_key_made_under_an_open_umask_is_still_0600(tmp_path: pathlib.Path) -> None:
    previous = os.umask(0)
    try:
        load_sealing_key(SecuritySettings(), data_dir=tmp_path, create=True)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / SEALING_KEY_FILE).stat().st_mode) == 0o600


def test_a_configured_key_is_never_replaced_by_a_made_one(tmp_path: pathlib.Path) -> None:
    path = _key_file(tmp_path / "key", 0o600)
    key = load_sealing_key(SecuritySettings(sealing_key_file=path), data_dir=tmp_path, create=True)
    assert key is not None and key.key_id == SealingKey(KEY_BYTES).key_id
    assert not (tmp_path / SEALING_KEY_FILE).exists()


def test_up_hands_its_instances_the_key_file_by_absolute_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import click

    from meshserve.cli._sealing import with_sealing_key
    from meshserve.settings import Settings

    monkeypatch.chdir(tmp_path)
    made = with_sealing_key(Settings(data_dir=pathlib.Path("data")), create=True)
    assert made.security.sealing_key_file == tmp_path / "data" / SEALING_KEY_FILE
    assert made.security.sealing_key_file.is_file()
    # A key in the environment reaches children through theirs: no file is named.
    given = Settings(security=SecuritySettings(sealing_key=SecretStr(KEY_BYTES.hex())))
    assert with_sealing_key(given, create=True) == given
    assert with_sealing_key(Settings(data_dir=tmp_path / "none"), create=False).security == (
        SecuritySettings()
    )
    loose = _key_file(tmp_path / "loose", 0o644)
    with pytest.raises(click.UsageError, match="0600 or stricter"):
        with_sealing_key(Settings(security=SecuritySettings(sealing_key_file=loose)), create=True)
