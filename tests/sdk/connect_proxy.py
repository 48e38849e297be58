"""An HTTP CONNECT proxy for tests inside a network namespace: the only way out. It resolves
target hosts from its own table (MAP="bapi.test=127.0.0.1,…"), so names the namespace's
/etc/hosts sends nowhere still reach the fake Clerk through it.

Environment: PORT, MAP.
"""

import os
import socket
import threading

TABLE = dict(
    pair.split("=", 1) for pair in os.environ.get("MAP", "").split(",") if "=" in pair
)


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = client.recv(1024)
        if not chunk:
            return client.close()
        head += chunk
    line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(line) < 2 or line[0] != "CONNECT":
        client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
        return client.close()
    host, port = line[1].rsplit(":", 1)
    try:
        upstream = socket.create_connection((TABLE.get(host, host), int(port)), timeout=5)
    except OSError:
        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        return client.close()
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)


listener = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
