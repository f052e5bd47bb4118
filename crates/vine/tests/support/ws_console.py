#!/usr/bin/env python3
"""Reads what vine's web console websocket sends first (the console log's tail) and prints it.

usage: ws_console.py HOST:PORT VM TOKEN SECONDS
A minimal RFC 6455 client (stdlib only): TLS without verification (the daemon's certificate is
self-signed), the upgrade, then server frames until SECONDS have passed with nothing new."""
import base64, os, socket, ssl, sys, time

addr, vm, token, quiet = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
host, port = addr.rsplit(":", 1)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /api/vms/{vm}/console/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, buf = buf.split(b"\r\n\r\n", 1)
if b" 101 " not in head.split(b"\r\n")[0]:
    sys.exit(f"no upgrade: {head!r}")
s.settimeout(quiet)
out = bytearray()

def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk

try:
    while True:
        need(2)
        op, ln = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if ln == 126:
            need(4); ln = int.from_bytes(buf[2:4], "big"); at = 4
        elif ln == 127:
            need(10); ln = int.from_bytes(buf[2:10], "big"); at = 10
        need(at + ln)
        payload, buf = buf[at:at + ln], buf[at + ln:]
        if op in (1, 2, 0):
            out += payload
        elif op == 8:
            break
except (socket.timeout, EOFError, ssl.SSLError):
    pass
sys.stdout.buffer.write(bytes(out))
