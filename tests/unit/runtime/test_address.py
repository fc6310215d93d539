import pytest

from meshserve.runtime import ListenAddress


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("unix:/tmp/x.sock", "unix:/tmp/x.sock"),
        ("unix:///tmp/x.sock", "unix:/tmp/x.sock"),
        ("127.0.0.1:8001", "127.0.0.1:8001"),
        ("127.0.0.7:0", "127.0.0.7:0"),
        ("localhost:9", "localhost:9"),
        ("[::1]:8001", "[::1]:8001"),
    ],
)
def test_accepted_addresses(text: str, target: str) -> None:
    assert ListenAddress.parse(text).grpc_target() == target


@pytest.mark.parametrize("text", ["0.0.0.0:8001", "10.1.2.3:80", "[::]:1", "example.com:80"])
def test_network_interfaces_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="never on a network interface"):
        ListenAddress.parse(text)


@pytest.mark.parametrize("text", ["unix:relative.sock", "127.0.0.1", "127.0.0.1:http", "1:99999"])
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        ListenAddress.parse(text)
