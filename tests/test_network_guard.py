import socket

import pytest


def test_non_loopback_connection_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match="only connect to loopback"):
        sock.connect(("93.184.216.34", 80))


def test_non_loopback_lookup_is_refused() -> None:
    with pytest.raises(RuntimeError, match="only resolve loopback"):
        socket.getaddrinfo("example.com", 443)


def test_loopback_connection_is_allowed() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with server, socket.socket() as client:
        client.connect(server.getsockname())
