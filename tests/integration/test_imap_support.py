"""Helpers shared by the IMAP end-to-end tests (test_imap*.py): a server
with the imap/imaps listeners, imaplib sessions, deliveries over SMTP, a
raw line client for what imaplib cannot send. No tests here.

Every wait is bounded.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import time

from support import DOMAIN, HOSTNAME, Postamt, simple_message, uniq

# Every port the IMAP tests need, on ephemeral loopback ports.
IMAP_LISTEN = {
    "smtp": ["127.0.0.1:0"],
    "pop3": ["127.0.0.1:0"],
    "imap": ["127.0.0.1:0"],
    "imaps": ["127.0.0.1:0"],
}

# imaplib (3.11) does not know these commands.
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
imaplib.Commands.setdefault("IDLE", ("AUTH", "SELECTED"))


def imap_server(binary, root, overrides: dict | None = None) -> Postamt:
    over = {"listen": dict(IMAP_LISTEN)}
    for k, v in (overrides or {}).items():
        over[k] = v
    srv = Postamt(binary, root, over)
    srv.start()
    return srv


def connect(srv: Postamt, user: str | None = None, password: str | None = None, timeout: float = 30.0) -> imaplib.IMAP4:
    """imaplib on the imap port (plaintext: the tests run on loopback)."""
    m = imaplib.IMAP4(*srv.addr("imap"), timeout=timeout)
    if user is not None:
        typ, data = m.login(user, password)
        assert typ == "OK", (typ, data)
    return m


class NamedIMAP4_SSL(imaplib.IMAP4_SSL):
    """IMAP4_SSL that connects to an address but checks the certificate
    (and sends SNI) for HOSTNAME."""

    def _create_socket(self, timeout):
        sock = imaplib.IMAP4._create_socket(self, timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=HOSTNAME)


def connect_tls(srv: Postamt, timeout: float = 30.0) -> imaplib.IMAP4_SSL:
    host, port = srv.addr("imaps")
    return NamedIMAP4_SSL(host, port, ssl_context=srv.tls_context(), timeout=timeout)


def starttls(m: imaplib.IMAP4, srv: Postamt) -> None:
    """STARTTLS with the certificate checked for HOSTNAME."""
    m.host = HOSTNAME
    typ, data = m.starttls(ssl_context=srv.tls_context())
    assert typ == "OK", (typ, data)


def deliver(srv: Postamt, user: str, count: int = 1, subject: str = "test") -> list[str]:
    """Sends `count` messages to `user` over SMTP, one at a time, each
    waited for until it is in the mailbox (the delivery agent works on
    messages in parallel, so only this makes tokens[i] the i-th UID);
    returns their tokens."""
    before = len(srv.messages(user))
    tokens = []
    for i in range(count):
        token = uniq(f"imap{i}-")
        data = simple_message(token, subject=subject, to=f"{user}@{DOMAIN}")
        srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], data)
        tokens.append(token)
        srv.wait_messages(user, before + i + 1)
    return tokens


def ok(result, what: str = ""):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data!r}"
    return data


def untagged(m: imaplib.IMAP4, name: str) -> list:
    """Takes the untagged responses named `name` imaplib collected."""
    return m.untagged_responses.pop(name.upper(), [])


def fetch_map(m: imaplib.IMAP4, seqset: str, items: str, uid: bool = False) -> dict[int, bytes]:
    """FETCH results as {sequence number: response text without literals}."""
    data = ok(m.uid("FETCH", seqset, items) if uid else m.fetch(seqset, items), f"FETCH {seqset} {items}")
    out = {}
    for part in data:
        if part is None:
            continue
        text = part[0] if isinstance(part, tuple) else part
        if text == b")":
            continue
        mm = re.match(rb"(\d+) \(", text)
        assert mm, f"unexpected FETCH data {part!r}"
        out[int(mm.group(1))] = text if not isinstance(part, tuple) else text + b" " + part[1]
    return out


def uids_of(m: imaplib.IMAP4) -> list[int]:
    data = ok(m.uid("SEARCH", None, "ALL"))
    return [int(x) for x in data[0].split()]


class RawImap:
    """A line client over a plain socket for what imaplib cannot do (IDLE,
    SASL-IR, hostile input)."""

    def __init__(self, addr, timeout: float = 30.0, tls: ssl.SSLContext | None = None):
        self.sock = socket.create_connection(addr, timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, timeout: float | None = None) -> bytes:
        old = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while b"\r\n" not in self.buf:
                assert len(self.buf) < 1 << 20, "line too long"
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError(f"connection closed; unread {self.buf!r}")
                self.buf += chunk
        finally:
            self.sock.settimeout(old)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def until_tag(self, tag: bytes, limit: int = 100_000) -> list[bytes]:
        """Lines up to and including the tagged reply to `tag`."""
        lines = []
        for _ in range(limit):
            l = self.line()
            lines.append(l)
            if l.startswith(tag + b" "):
                return lines
        raise AssertionError(f"no tagged reply {tag!r}")

    def command(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tag(tag)

    def closed(self, timeout: float = 10.0) -> bool:
        """Reads until EOF (True) or timeout (False), discarding."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
