"""The stack's web app: counts its visits in Redis and says which instance
answered. GET /health answers once Redis does. It listens with
SO_REUSEPORT, so that the new instance of a replace binds beside the old.
On SIGTERM it stops as a server behind a proxy should: it stops listening
(new connections go to the other instance), answers the requests it has,
each with "Connection: close", closes its idle connections, and exits once
no request is left. Killed mid-answer instead, it would cut a response
nginx had begun to pass on.

    python3 app.py PORT REDIS_PORT
"""
import http.server
import os
import signal
import socket
import socketserver
import sys
import threading
import time

PORT, REDIS_PORT = int(sys.argv[1]), int(sys.argv[2])
GREETING = os.environ.get("GREETING", "Hello")


def redis(*args):
    """One command to Redis over its protocol (RESP); returns the reply line."""
    with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=2) as s:
        req = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)
        s.sendall(req.encode())
        return s.makefile("rb").readline().decode().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.conns.add(self.connection)

    def finish(self):
        with self.server.lock:
            self.server.conns.discard(self.connection)
        super().finish()

    def do_GET(self):
        with self.server.lock:
            self.server.active += 1
        try:
            self.answer()
        finally:
            with self.server.lock:
                self.server.active -= 1

    def answer(self):
        try:
            if self.path == "/health":
                ok = redis("PING") == "+PONG"
                body = "ok\n" if ok else "redis is not answering\n"
                code = 200 if ok else 503
            else:
                visits = redis("INCR", "visits").lstrip(":")
                body = "%s: instance on port %d, visit %s\n" % (GREETING, PORT, visits)
                code = 200
        except OSError as e:
            body, code = "redis: %s\n" % e, 503
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        if self.server.draining:
            self.send_header("Connection", "close")  # its last answer
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        self.lock = threading.Lock()
        self.conns = set()  # the open connections, to close idle ones at the end
        self.active = 0  # requests being answered
        self.draining = False  # set by SIGTERM
        super().__init__(*args, **kwargs)

    def quiet(self, limit):
        """Waits, up to limit seconds, until no request is being answered."""
        end = time.monotonic() + limit
        while self.active and time.monotonic() < end:
            time.sleep(0.01)

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


if __name__ == "__main__":
    srv = Server(("127.0.0.1", PORT), Handler)

    def stop(signum, frame):
        srv.draining = True
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print("listening on 127.0.0.1:%d" % PORT)
    srv.serve_forever()
    srv.server_close()
    srv.quiet(5)
    with srv.lock:
        idle = list(srv.conns)
    for c in idle:
        try:
            c.shutdown(socket.SHUT_RD)  # its handler reads the end, and closes it
        except OSError:
            pass
    srv.quiet(2)
