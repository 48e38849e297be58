"""A fake Clerk Backend API for tests that run inside a network namespace (where the Rust
fixtures cannot reach): HTTPS on 127.0.0.1, `GET /v1/jwks` and
`POST /v1/sessions/<id>/tokens` for `Authorization: Bearer $SECRET`, answering from files the
test wrote (a JWKS and a token minted with its key).

Environment: PORT, SECRET, CERT, KEY (PEM files), JWKS (file), TOKEN (file).
"""

import os
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def read(name):
    with open(os.environ[name], "rb") as f:
        return f.read()


class Handler(BaseHTTPRequestHandler):
    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        return self.headers.get("Authorization") == "Bearer " + os.environ["SECRET"]

    def do_GET(self):
        if not self.authorized():
            return self.answer(401, b'{"errors":[{"code":"authentication_invalid"}]}')
        if self.path == "/v1/jwks":
            return self.answer(200, read("JWKS"))
        self.answer(404, b"{}")

    def do_POST(self):
        if not self.authorized():
            return self.answer(401, b'{"errors":[{"code":"authentication_invalid"}]}')
        if self.path.startswith("/v1/sessions/") and self.path.endswith("/tokens"):
            return self.answer(200, b'{"jwt":"' + read("TOKEN").strip() + b'"}')
        self.answer(404, b"{}")

    def log_message(self, *args):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.environ["CERT"], os.environ["KEY"])
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
