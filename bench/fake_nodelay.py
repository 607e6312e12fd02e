#!/usr/bin/python3
"""fake_nodelay.py: the project's fake Square (test/fake_square/server.py) unchanged, but with
TCP_NODELAY on its sockets (socketserver's disable_nagle_algorithm). The fake writes a response's
headers and body in two sends; on a reused keep-alive connection Nagle's algorithm then holds the
body until the client's delayed ACK (~40 ms on Linux), so every request costs ~40 ms on loopback.
bench.py --fake-nodelay uses this to measure squaresync without that artifact. Same arguments as
server.py."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fake_square"))
import server  # noqa: E402

server.Handler.disable_nagle_algorithm = True

if __name__ == "__main__":
    server.main()
