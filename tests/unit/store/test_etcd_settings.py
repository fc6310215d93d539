"""The etcd client reconnects with a bounded backoff, from the settings."""

from __future__ import annotations

import pytest

from meshserve.settings import StoreSettings
from meshserve.store._etcd_settings import EtcdSettings
from meshserve.store._factory import etcd_settings


def test_reconnect_backoff_is_bounded_by_the_settings() -> None:
    options = dict(
        EtcdSettings(reconnect_backoff_initial=0.05, reconnect_backoff_max=0.4).channel_options
    )
    assert options["grpc.initial_reconnect_backoff_ms"] == 50
    assert options["grpc.max_reconnect_backoff_ms"] == 400
    # A channel of its own: no inheriting another channel's long backoff.
    assert options["grpc.use_local_subchannel_pool"] == 1


def test_default_backoff_reconnects_within_a_second() -> None:
    options = dict(EtcdSettings().channel_options)
    assert options["grpc.max_reconnect_backoff_ms"] <= 1000


def test_backoff_settings_must_make_sense() -> None:
    with pytest.raises(ValueError, match="reconnect_backoff_initial"):
        EtcdSettings(reconnect_backoff_initial=0)
    with pytest.raises(ValueError, match="reconnect_backoff_initial"):
        EtcdSettings(reconnect_backoff_initial=2.0, reconnect_backoff_max=1.0)


def test_store_settings_carry_the_backoff() -> None:
    settings = etcd_settings(
        StoreSettings(
            url="etcd://127.0.0.1:2379",
            etcd_reconnect_backoff_initial_s=0.2,
            etcd_reconnect_backoff_max_s=0.8,
        )
    )
    assert (settings.reconnect_backoff_initial, settings.reconnect_backoff_max) == (0.2, 0.8)
    # A cap under the first wait is raised to it rather than refused.
    low = etcd_settings(
        StoreSettings(
            url="etcd://127.0.0.1:2379",
            etcd_reconnect_backoff_initial_s=0.3,
            etcd_reconnect_backoff_max_s=0.1,
        )
    )
    assert low.reconnect_backoff_max == 0.3
