"""Leader election over a Lease, against kmock's Kubernetes API emulator."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import kmock
import pytest

from meshserve.operator import KubeApi, KubeConnection
from meshserve.operator._lease import LeaseElection
from tests._kube_emulator import running_emulator


@pytest.fixture
async def emulator() -> AsyncIterator[kmock.KubernetesEmulator]:
    async with running_emulator() as emulator:
        yield emulator


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def _election(api: KubeApi, identity: str, clock: _Clock) -> LeaseElection:
    return LeaseElection(
        api,
        namespace="mm",
        name="meshserve-operator",
        identity=identity,
        duration_s=15.0,
        renew_s=5.0,
        clock=clock,
    )


async def test_one_of_two_replicas_holds_the_lease_and_the_other_takes_it_once_expired(
    emulator: kmock.KubernetesEmulator,
) -> None:
    clock = _Clock()
    connection = KubeConnection(server=str(emulator.url))
    async with (
        KubeApi(connection, timeout_s=10, user_agent="a") as api_a,
        KubeApi(connection, timeout_s=10, user_agent="b") as api_b,
    ):
        first, second = _election(api_a, "a", clock), _election(api_b, "b", clock)
        assert await first.try_once()
        assert not await second.try_once()
        assert first.is_leader and not second.is_leader
        # The holder renews: still not the other's, however often it asks.
        clock.now += datetime.timedelta(seconds=10)
        assert await first.try_once()
        clock.now += datetime.timedelta(seconds=10)
        assert not await second.try_once()
        # The holder stops renewing: after the duration the other takes it.
        clock.now += datetime.timedelta(seconds=16)
        assert await second.try_once()
        assert not await first.try_once()
        assert not first.is_leader and second.is_leader
        lease = await api_a.get(first._ref)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1


async def test_a_released_lease_is_taken_at_once(emulator: kmock.KubernetesEmulator) -> None:
    clock = _Clock()
    connection = KubeConnection(server=str(emulator.url))
    async with KubeApi(connection, timeout_s=10, user_agent="a") as api:
        first, second = _election(api, "a", clock), _election(api, "b", clock)
        assert await first.try_once()
        await first.release()
        assert not first.is_leader
        assert await second.try_once()
