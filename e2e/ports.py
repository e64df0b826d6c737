"""Free loopback ports for the servers the tests start."""

import socket

# Ports handed out by this process: the OS may offer a just-closed port again right away,
# and two servers of one test (a Kafka and an HTTP listener) must not get the same one.
_handed_out = set()


def free_port():
    """A loopback port nobody listens on right now and this process has not handed out."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
