"""Scripted SMTP sinks for the remote-delivery tests: small SMTP servers on
loopback addresses that answer as the test says (greeting, EHLO, replies to
MAIL/RCPT/DATA and to the end of data, delays, silence, STARTTLS, implicit
TLS, AUTH) and record everything the client did.

Several sinks share one port on different loopback addresses (127.0.0.2,
127.0.0.3, ...: the whole 127/8 is loopback on Linux), because the server
under test contacts every MX host on the one `[delivery] remote_port`.

Every socket operation is bounded in time; `stop()` ends every thread.

Also the helpers of the remote-delivery tests: fresh loopback addresses,
a CA-signed certificate for TLS sinks, the server configuration that routes
through the stub DNS to the sinks, and submitting a message after AUTH.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

MAX_LINE = 64 * 1024
MAX_DATA = 32 * 1024 * 1024
DEFAULT_CAPS = ("PIPELINING", "8BITMIME", "SIZE 52428800", "ENHANCEDSTATUSCODES", "SMTPUTF8")

Reply = str | Callable[[str], str]


@dataclass
class Transaction:
    """One MAIL ... end-of-data exchange as the sink saw it."""

    sink: str  # the sink's address ip:port
    helo: str
    mail_from: str  # the address inside <>
    mail_params: str
    rcpts: list[str]  # recipients the sink accepted
    rcpt_attempts: list[str]  # every RCPT TO address, accepted or not
    raw: bytes  # DATA bytes as on the wire, before the final ".\r\n"
    data: bytes  # after dot-unstuffing
    tls: bool
    auth: tuple[str, str, str] | None  # (mechanism, user, password)
    eod_reply: str  # what the sink answered to the end of data

    @property
    def accepted(self) -> bool:
        return self.eod_reply.startswith("2")


@dataclass
class Session:
    """One connection."""

    peer: tuple[str, int]
    commands: list[str] = field(default_factory=list)
    tls: bool = False
    auth: tuple[str, str, str] | None = None
    closed_by_client: bool = False


def unstuff(raw: bytes) -> bytes:
    """RFC 5321 4.5.2: drop the first dot of every CRLF line starting with one."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


def bare_cr_or_lf(raw: bytes) -> list[int]:
    """Offsets of CRs not followed by LF and LFs not preceded by CR."""
    bad = []
    for i, b in enumerate(raw):
        if b == 0x0D and raw[i + 1:i + 2] != b"\n":
            bad.append(i)
        elif b == 0x0A and (i == 0 or raw[i - 1] != 0x0D):
            bad.append(i)
    return bad


class Sink:
    """An SMTP sink on `(host, port)`. Change its behaviour at any time by
    setting its attributes (they are read at the moment they are needed)."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        name: str = "sink.test",
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: bool = False,
        credentials: tuple[str, str] | None = None,
        start: bool = True,
    ):
        self.host = host
        self.port = port
        self.name = name
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.credentials = credentials  # accepted (user, password); None = any
        # ---- the script
        self.refuse_greeting: str | None = None  # e.g. "421 4.3.2 busy": said, then closed
        self.silent = False  # accept the connection, never say anything
        self.caps: list[str] = list(DEFAULT_CAPS)
        self.ehlo_lines = 0  # > 0: answer EHLO with that many lines instead
        self.ehlo_line_bytes = 0  # > 0: answer EHLO with one line this long
        self.mail_reply: Reply = "250 2.1.0 Ok"
        self.rcpt_reply: Reply = "250 2.1.5 Ok"
        self.data_reply = "354 End data with <CR><LF>.<CR><LF>"
        self.eod_reply: Reply = "250 2.0.0 Ok: queued"
        self.eod_delay = 0.0  # seconds to wait before answering the end of data
        self.tls_broken = False  # agree to STARTTLS, then send garbage and close
        self.eod_close = False  # close the connection instead of answering the end of data
        self.timeout = 30.0  # per socket read
        # ---- what happened
        self.lock = threading.Lock()
        self.transactions: list[Transaction] = []
        self.sessions: list[Session] = []
        self.connections = 0
        self.data_received = threading.Event()  # set at each end of data
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # ---- lifecycle

    def start(self) -> "Sink":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((self.host, self.port))
        except OSError:
            s.close()
            raise
        s.listen(64)
        s.settimeout(0.2)
        self.port = s.getsockname()[1]
        self.listener = s
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"sink-{self.host}:{self.port}")
        self._thread.start()
        return self

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- queries

    def with_token(self, token: bytes | str) -> list[Transaction]:
        t = token.encode() if isinstance(token, str) else token
        with self.lock:
            return [x for x in self.transactions if t in x.data]

    def wait_token(self, token: bytes | str, count: int = 1, timeout: float = 30.0) -> list[Transaction]:
        """Waits until at least `count` transactions carried `token`."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.with_token(token)
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                with self.lock:
                    seen = [(s.peer, s.commands[:20]) for s in self.sessions]
                raise AssertionError(
                    f"sink {self.addr}: timed out after {timeout}s waiting for {count} transaction(s) "
                    f"carrying {token!r}; got {len(got)}; sessions: {seen}"
                )
            time.sleep(0.05)

    def wait_connections(self, count: int, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() >= deadline:
                raise AssertionError(f"sink {self.addr}: {self.connections} connection(s), expected {count} within {timeout}s")
            time.sleep(0.05)
        return self.connections

    # ---- the server

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self.listener
            if listener is None:
                return
            try:
                conn, peer = listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer) -> None:
        session = Session(peer=peer)
        with self.lock:
            self.sessions.append(session)
        try:
            conn.settimeout(self.timeout)
            _Conversation(self, conn, session).run()
        except (OSError, EOFError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


class _Conversation:
    """One SMTP session of a sink."""

    def __init__(self, sink: Sink, conn: socket.socket, session: Session):
        self.sink = sink
        self.sock: socket.socket = conn
        self.session = session
        self.buf = b""
        self.helo = ""
        self.reset()

    def reset(self) -> None:
        self.mail_from: str | None = None
        self.mail_params = ""
        self.rcpts: list[str] = []
        self.rcpt_attempts: list[str] = []

    # ---- I/O

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def reply(self, r: Reply, arg: str = "") -> str:
        text = r(arg) if callable(r) else r
        self.send(text)
        return text

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                self.session.closed_by_client = True
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_data(self) -> bytes:
        """Bytes up to CRLF.CRLF (the terminator removed)."""
        data = b"\r\n" + self.buf  # a terminator may follow the DATA line at once
        self.buf = b""
        while True:
            i = data.find(b"\r\n.\r\n")
            if i >= 0:
                self.buf = data[i + 5:]
                return data[2:i + 2]
            if len(data) > MAX_DATA:
                raise ValueError("data too large")
            chunk = self.sock.recv(65536)
            if not chunk:
                self.session.closed_by_client = True
                raise EOFError
            data += chunk

    def start_tls(self) -> None:
        ctx = self.sink.tls_context
        assert ctx is not None
        if self.buf:
            raise ValueError("client sent data before the TLS handshake")
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.session.tls = True
        with self.sink.lock:
            self.sink._conns.append(self.sock)

    # ---- the protocol

    def run(self) -> None:
        sink = self.sink
        if sink.implicit_tls:
            self.start_tls()
        if sink.silent:
            # Hold the connection, say nothing, until the client gives up.
            while not sink._stop.is_set():
                try:
                    if not self.sock.recv(4096):
                        self.session.closed_by_client = True
                        return
                except (TimeoutError, socket.timeout):
                    continue
            return
        if sink.refuse_greeting:
            self.send(sink.refuse_greeting)
            # RFC 5321 3.8: the client should QUIT; read a little, then close.
            try:
                self.sock.settimeout(2)
                self.read_line()
            except Exception:
                pass
            return
        self.send(f"220 {sink.name} ESMTP sink")
        for _ in range(10_000):
            line = self.read_line()
            text = line.decode("utf-8", "replace")
            self.session.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            arg = text[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                self.helo = arg
                self.reset()
                if verb == "HELO":
                    self.send(f"250 {sink.name}")
                elif sink.ehlo_lines > 0:
                    self.huge_ehlo(sink.ehlo_lines)
                elif sink.ehlo_line_bytes > 0:
                    self.sock.sendall(b"250 " + b"x" * sink.ehlo_line_bytes + b"\r\n")
                else:
                    self.send_ehlo()
            elif verb == "STARTTLS":
                if sink.tls_context is None or self.session.tls:
                    self.send("502 5.5.1 not available")
                    continue
                self.send("220 2.0.0 go ahead")
                if sink.tls_broken:
                    # Wait for the ClientHello, answer it with garbage, close:
                    # a handshake that fails (not data injected before it).
                    self.sock.settimeout(5)
                    try:
                        self.sock.recv(4096)
                    except OSError:
                        pass
                    self.sock.sendall(b"this is not a TLS record\r\n" * 4)
                    return
                self.start_tls()
                self.helo = ""
                self.reset()
            elif verb == "AUTH":
                self.do_auth(arg)
            elif verb == "MAIL":
                addr, params = parse_path(arg, "FROM:")
                self.reset()
                r = self.reply(sink.mail_reply, addr)
                if r.startswith("2"):
                    self.mail_from, self.mail_params = addr, params
            elif verb == "RCPT":
                addr, _ = parse_path(arg, "TO:")
                self.rcpt_attempts.append(addr)
                if self.mail_from is None:
                    self.send("503 5.5.1 MAIL first")
                    continue
                r = self.reply(sink.rcpt_reply, addr)
                if r.startswith("2"):
                    self.rcpts.append(addr)
            elif verb == "DATA":
                if self.mail_from is None or not self.rcpts:
                    self.send("554 5.5.1 no valid recipients")
                    continue
                self.send(sink.data_reply)
                if not sink.data_reply.startswith("3"):
                    continue
                raw = self.read_data()
                sink.data_received.set()
                delay = sink.eod_delay
                eod = sink.eod_reply(self.mail_from) if callable(sink.eod_reply) else sink.eod_reply
                tx = Transaction(
                    sink=sink.addr,
                    helo=self.helo,
                    mail_from=self.mail_from,
                    mail_params=self.mail_params,
                    rcpts=list(self.rcpts),
                    rcpt_attempts=list(self.rcpt_attempts),
                    raw=raw,
                    data=unstuff(raw),
                    tls=self.session.tls,
                    auth=self.session.auth,
                    eod_reply=eod,
                )
                with sink.lock:
                    sink.transactions.append(tx)
                if sink.eod_close:
                    return
                if delay:
                    end = time.monotonic() + delay
                    while time.monotonic() < end and not sink._stop.is_set():
                        time.sleep(0.05)
                self.send(eod)
                self.reset()
            elif verb == "RSET":
                self.reset()
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("500 5.5.2 unknown command")

    def send_ehlo(self) -> None:
        sink = self.sink
        caps = list(sink.caps)
        if sink.tls_context is not None and not self.session.tls and not sink.implicit_tls:
            caps.append("STARTTLS")
        if sink.auth:
            caps.append("AUTH PLAIN LOGIN")
        lines = [sink.name] + caps
        out = "".join(f"250{'-' if i < len(lines) - 1 else ' '}{l}\r\n" for i, l in enumerate(lines))
        self.sock.sendall(out.encode())

    def huge_ehlo(self, n: int) -> None:
        out = "".join(f"250-{self.sink.name} line {i}\r\n" for i in range(n - 1)) + "250 SIZE 1000\r\n"
        self.sock.sendall(out.encode())

    def do_auth(self, arg: str) -> None:
        sink = self.sink
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        try:
            if mech == "PLAIN":
                resp = parts[1] if len(parts) > 1 else None
                if resp is None:
                    self.send("334 ")
                    resp = self.read_line().decode()
                fields = base64.b64decode(resp, validate=True).split(b"\0")
                if len(fields) != 3:
                    self.send("501 5.5.2 bad PLAIN response")
                    return
                user, password = fields[1].decode(), fields[2].decode()
            elif mech == "LOGIN":
                if len(parts) > 1:
                    user = base64.b64decode(parts[1], validate=True).decode()
                else:
                    self.send("334 VXNlcm5hbWU6")
                    user = base64.b64decode(self.read_line(), validate=True).decode()
                self.send("334 UGFzc3dvcmQ6")
                password = base64.b64decode(self.read_line(), validate=True).decode()
            else:
                self.send("504 5.5.4 mechanism not supported")
                return
        except (ValueError, UnicodeDecodeError):
            self.send("501 5.5.2 cannot decode")
            return
        self.session.auth = (mech, user, password)
        if sink.credentials is not None and (user, password) != sink.credentials:
            self.send("535 5.7.8 authentication failed")
            return
        self.send("235 2.7.0 Authentication successful")


def parse_path(arg: str, prefix: str) -> tuple[str, str]:
    """`FROM:<a@b> PARAMS` -> ("a@b", "PARAMS")."""
    rest = arg[len(prefix):] if arg.upper().startswith(prefix) else arg
    rest = rest.strip()
    if rest.startswith("<"):
        end = rest.find(">")
        if end >= 0:
            return rest[1:end], rest[end + 1:].strip()
    addr, _, params = rest.partition(" ")
    return addr, params


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context for a sink from PEM files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# --------------------------------------------------------------------------
# helpers for tests that drive remote delivery

_next_ip = [0]
_ip_lock = threading.Lock()


def fresh_ip() -> str:
    """A loopback address no other sink of this test run has used
    (127.0.10.1, 127.0.10.2, ...), so every test gets hosts of its own."""
    with _ip_lock:
        _next_ip[0] += 1
        n = _next_ip[0]
    return f"127.0.{10 + n // 250}.{1 + n % 250}"


def make_ca_and_cert(directory, hostname: str = "smarthost.test") -> tuple[str, str, str]:
    """A CA and a leaf certificate signed by it (P-256, made with the openssl
    CLI) for `hostname`, localhost and 127.0.0.1. Returns (ca_cert,
    leaf_cert, leaf_key) paths. A real chain, because rustls (the server's
    client side) does not accept a self-signed CA certificate as a server
    certificate."""
    import subprocess
    from pathlib import Path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = d / "ca-key.pem", d / "ca-cert.pem"
    key, csr, cert, ext = d / "leaf-key.pem", d / "leaf.csr", d / "leaf-cert.pem", d / "leaf.ext"

    def run(*args: str) -> None:
        subprocess.run(list(args), check=True, capture_output=True, timeout=60)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "2", "-subj", "/CN=Postamt Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", str(ca_key), "-out", str(ca_cert))
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={hostname}", "-keyout", str(key), "-out", str(csr))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName=DNS:{hostname},DNS:localhost,IP:127.0.0.1\n"
    )
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return str(ca_cert), str(cert), str(key)


def submit(srv, user: str, password: str, sender: str, rcpts: list[str], data: bytes, timeout: float = 30.0) -> str:
    """Sends one message through the `submission` port after AUTH (the
    server must allow plaintext AUTH on loopback); returns the queue id."""
    import smtplib

    from support import CLIENT_NAME, queue_id_from

    s = smtplib.SMTP(*srv.addr("submission"), local_hostname=CLIENT_NAME, timeout=timeout)
    try:
        code, resp = s.ehlo()
        assert code == 250, f"EHLO: {code} {resp!r}"
        code, resp = s.login(user, password)
        assert code == 235, f"AUTH as {user}: {code} {resp!r}"
        code, resp = s.mail(sender)
        assert code == 250, f"MAIL FROM:<{sender}>: {code} {resp!r}"
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, f"RCPT TO:<{r}>: {code} {resp!r}"
        code, resp = s.data(data)
        assert code == 250, f"DATA: {code} {resp!r}"
        return queue_id_from(resp)
    finally:
        try:
            s.quit()
        except Exception:
            s.close()


def remote_overrides(dns, port: int, **delivery) -> dict:
    """A server that relays for authenticated loopback clients, resolves
    through the stub and contacts every MX host on `port`. Retries are far
    apart, so only `queue flush` retries (unless a test asks otherwise)."""
    return {
        "listen": {
            "smtp": ["127.0.0.1:0"],
            "submission": ["127.0.0.1:0"],
            "submissions": ["127.0.0.1:0"],
            "pop3": ["127.0.0.1:0"],
        },
        "submission": {"allow_plaintext_on_loopback": True},
        "dns": {"nameservers": [dns.addr]},
        # The stub answers at once, so the MX port's checks cost nothing.
        "sender_auth": {"verify": True},
        "delivery": {
            "remote_port": port,
            "retry_intervals": ["10m"],
            "give_up_after": "1d",
            "connect_timeout": "2s",
            "command_timeout": "2s",
            "data_timeout": "10s",
            **delivery,
        },
    }


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (for a sink or a `remote_port`)."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()
