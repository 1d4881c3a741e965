"""A static file server for the services example: Python's http.server,
listening with SO_REUSEPORT, so that during a create_before_destroy
replace the new instance binds the port beside the old one (a plain
`python3 -m http.server` cannot, and orch then keeps the old one).

    python3 serve.py PORT DIRECTORY
"""
import functools
import http.server
import socket
import sys


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


port, directory = int(sys.argv[1]), sys.argv[2]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
Server(("127.0.0.1", port), handler).serve_forever()
