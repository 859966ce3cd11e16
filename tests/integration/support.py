"""Helpers for the end-to-end tests: start and stop the real `postamt serve`,
write its TOML config, run CLI verbs, talk raw SMTP/POP3 and read Maildirs.

Every wait here is bounded in time; nothing retries forever.
"""

from __future__ import annotations

import base64
import json
import mailbox
import os
import poplib
import re
import secrets
import signal
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

REPO = Path(__file__).resolve().parents[2]
HOSTNAME = "mx.test.example"
DOMAIN = "example.org"
CLIENT_NAME = "client.test.example"
QUEUE_ID_RE = re.compile(rb"queued as ([0-9a-f]{32})\b")
QUEUE_ID_STR_RE = re.compile(r"\b[0-9a-f]{32}\b")

T = TypeVar("T")


# --------------------------------------------------------------------------
# small utilities


def find_binary() -> Path:
    """The binary under test: $POSTAMT_BIN, else the cargo debug build."""
    env = os.environ.get("POSTAMT_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO / "target"
    return base / "debug" / "postamt"


def uniq(prefix: str) -> str:
    """A fresh lowercase name, valid as a user name or local part."""
    return f"{prefix}{secrets.token_hex(4)}"


def wait_until(
    fn: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Calls `fn` until it returns something truthy, at most `timeout`
    seconds; fails naming `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def first_difference(a: bytes, b: bytes) -> str:
    """A short description of where two byte strings differ."""
    n = min(len(a), len(b))
    i = next((k for k in range(n) if a[k] != b[k]), n)
    return (
        f"lengths {len(a)} vs {len(b)}, first difference at offset {i}: "
        f"{a[max(0, i - 40):i + 40]!r} vs {b[max(0, i - 40):i + 40]!r}"
    )


def assert_bytes_equal(got: bytes, expected: bytes, what: str) -> None:
    assert got == expected, f"{what}: {first_difference(got, expected)}"


def split_received(stored: bytes, sent: bytes) -> bytes:
    """Checks that `stored` is exactly one `Received:` header (possibly
    folded) followed by the bytes that were `sent`; returns the header."""
    assert stored.startswith(b"Received: "), f"stored message must start with our Received: header, starts with {stored[:80]!r}"
    # The header ends at the first CRLF not followed by folding whitespace.
    end = 0
    while True:
        i = stored.find(b"\r\n", end)
        assert i >= 0, f"unterminated Received header: {stored[:300]!r}"
        end = i + 2
        if stored[end:end + 1] not in (b" ", b"\t"):
            break
    prefix, rest = stored[:end], stored[end:]
    assert b"\n" not in prefix[:-2].replace(b"\r\n", b""), f"bare LF inside the Received header: {prefix!r}"
    assert rest == sent, (
        "the stored message is not our Received: header followed by exactly the bytes sent: "
        + first_difference(rest, sent)
    )
    return prefix


def queue_id_from(resp: bytes) -> str:
    m = QUEUE_ID_RE.search(resp)
    assert m, f"250 reply does not name the queue id (`queued as <32 hex>`): {resp!r}"
    return m.group(1).decode()


# --------------------------------------------------------------------------
# TOML (writing only: tomllib reads)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: dict) -> str:
    """Writes a config of scalars, arrays and (nested) tables."""
    out: list[str] = []

    def table(prefix: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            out.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            if v is None:
                continue
            out.append(f"{k} = {_toml_value(v)}")
        for k, v in tables.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", cfg)
    return "\n".join(out) + "\n"


def deep_merge(base: dict, over: dict | None) -> dict:
    res = dict(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(res.get(k), dict):
            res[k] = deep_merge(res[k], v)
        else:
            res[k] = v
    return res


def base_config(data_dir: Path) -> dict:
    """The test configuration: loopback ephemeral ports, short timeouts,
    small limits that the tests probe, no DNS leaving the machine."""
    return {
        "hostname": HOSTNAME,
        "domains": [DOMAIN],
        "postmaster": f"postmaster@{DOMAIN}",
        "data_dir": str(data_dir),
        "create_mailboxes": True,
        "listen": {
            "smtp": ["127.0.0.1:0"],
            "pop3": ["127.0.0.1:0"],
        },
        "delivery": {
            # Long enough that nothing retries by itself during a test
            # unless the test asks for it (queue tests rely on `flush`).
            "retry_intervals": ["10m"],
            "give_up_after": "1d",
            "copy_local_failures_to_postmaster": True,
        },
        "limits": {
            "max_message_size": 3 * 1024 * 1024,
            "max_recipients": 10,
            "max_errors": 20,
            "idle_timeout": "60s",
        },
        "logging": {"receiver": True, "delivery": True, "retrieval": True, "level": "info"},
        # Nothing in these tests may resolve names on the network.
        "dns": {"nameservers": ["127.0.0.1:1"]},
        # SPF/DKIM/DMARC lookups would each wait for the DNS timeout here;
        # the sender-auth tests turn them on with a stub DNS server.
        "sender_auth": {"verify": False},
    }


def parse_addr(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------------
# raw line clients


class RawClient:
    """A bounded line-oriented client over a plain socket, for what smtplib
    and poplib cannot do (BDAT, bare CR/LF, pipelining, AUTH PLAIN)."""

    MAX_LINE = 64 * 1024

    def __init__(
        self,
        addr: tuple[str, int],
        timeout: float = 30.0,
        source_address: tuple[str, int] | None = None,
    ):
        self.sock = socket.create_connection(addr, timeout=timeout, source_address=source_address)
        self.buf = b""

    # ---- TLS (issue 3)

    def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None = HOSTNAME) -> None:
        """Wraps the socket in TLS after a STARTTLS/STLS reply. Nothing may
        be left unread in plaintext: the server must not have said more."""
        assert self.buf == b"", f"the server sent more in plaintext after agreeing to TLS: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    @classmethod
    def implicit_tls(
        cls,
        addr: tuple[str, int],
        ctx: ssl.SSLContext,
        server_hostname: str | None = HOSTNAME,
        timeout: float = 30.0,
        source_address: tuple[str, int] | None = None,
    ) -> "RawClient":
        """A client whose TLS handshake is the first thing on the wire."""
        c = cls(addr, timeout, source_address)
        try:
            c.start_tls(ctx, server_hostname)
        except BaseException:
            c.close()
            raise
        return c

    def unsolicited(self, wait: float = 1.0) -> bytes:
        """Whatever the server says within `wait` seconds without being asked
        (expected: nothing). Restores the socket timeout."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        got = self.buf
        self.buf = b""
        try:
            while len(got) < self.MAX_LINE:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (TimeoutError, socket.timeout):
            pass
        except ssl.SSLWantReadError:
            pass
        finally:
            self.sock.settimeout(old)
        return got

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """One line including its CRLF; raises EOFError on close."""
        while b"\r\n" not in self.buf:
            if len(self.buf) > self.MAX_LINE:
                raise AssertionError(f"line longer than {self.MAX_LINE} bytes: {self.buf[:100]!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unread: {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_reply(self) -> tuple[int, bytes]:
        """One SMTP reply (multi-line joined by LF): (code, text without codes)."""
        texts = []
        for _ in range(200):
            line = self.read_line()
            assert len(line) >= 5 and line[:3].isdigit(), f"malformed SMTP reply line {line!r}"
            texts.append(line[4:-2])
            if line[3:4] == b" ":
                return int(line[:3]), b"\n".join(texts)
            assert line[3:4] == b"-", f"malformed SMTP reply line {line!r}"
        raise AssertionError("SMTP reply longer than 200 lines")

    def expect(self, code: int) -> bytes:
        got, text = self.read_reply()
        assert got == code, f"expected {code}, got {got} {text!r}"
        return text

    def command(self, line: bytes, code: int) -> bytes:
        self.send(line + b"\r\n")
        return self.expect(code)

    def read_multiline(self) -> list[bytes]:
        """A POP3 multi-line body after its status line, unstuffed, without CRLFs."""
        out = []
        for _ in range(10_000_000):
            line = self.read_line()[:-2]
            if line == b".":
                return out
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)
        raise AssertionError("unbounded multi-line response")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# the server under test


class Postamt:
    """One `postamt serve` process on a data dir of its own."""

    def __init__(self, binary: Path, root: Path, overrides: dict | None = None):
        self.binary = binary
        self.root = root
        self.data_dir = root / "data"
        self.config_path = root / "postamt.toml"
        self.config = deep_merge(base_config(self.data_dir), overrides)
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(self.config))
        self.proc: subprocess.Popen | None = None
        self.listeners: dict[str, list[str]] = {}
        self.starts = 0
        self.stderr_path: Path | None = None

    @classmethod
    def from_config_file(cls, binary: Path, root: Path, config_path: Path) -> "Postamt":
        """Wraps a config file written by someone else (e.g. quickstart)."""
        import tomllib

        srv = cls.__new__(cls)
        srv.binary = binary
        srv.root = root
        srv.config_path = config_path
        srv.config = tomllib.loads(config_path.read_text())
        data_dir = Path(srv.config.get("data_dir", "/var/lib/postamt"))
        srv.data_dir = data_dir if data_dir.is_absolute() else config_path.parent / data_dir
        srv.config.setdefault("listen", {})
        srv.proc = None
        srv.listeners = {}
        srv.starts = 0
        srv.stderr_path = None
        return srv

    def rewrite_config(self) -> None:
        self.config_path.write_text(to_toml(self.config))

    # ---- process

    @property
    def listeners_file(self) -> Path:
        return self.data_dir / "run" / "listeners.json"

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None, "server already running"
        try:
            self.listeners_file.unlink()
        except FileNotFoundError:
            pass
        self.starts += 1
        self.stderr_path = self.root / f"serve-{self.starts}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", str(self.config_path), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.root,
            )
        wanted = [k for k, v in self.config["listen"].items() if v]

        def ready():
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"`postamt serve` exited with {rc} before listening:\n{self.stderr_tail()}")
            try:
                data = json.loads(self.listeners_file.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            return data if all(data.get(k) for k in wanted) else None

        try:
            self.listeners = wait_until(ready, timeout, f"{self.listeners_file} naming {wanted}")
        except AssertionError:
            self.kill9()
            raise

    def stderr_tail(self, n: int = 4000) -> str:
        if not self.stderr_path or not self.stderr_path.exists():
            return "(no stderr)"
        return self.stderr_path.read_bytes()[-n:].decode("utf-8", "replace")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (bounded); returns the exit code."""
        assert self.proc is not None, "server not running"
        rc = self.proc.poll()
        assert rc is None, f"server died during the test with exit code {rc}:\n{self.stderr_tail()}"
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"server did not exit within {timeout}s of SIGTERM:\n{self.stderr_tail()}")
        self.proc = None
        return rc

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop; asserts exit code 0."""
        if self.proc is None:
            return
        rc = self.terminate(timeout)
        assert rc == 0, f"server exited with {rc} after SIGTERM (expected 0):\n{self.stderr_tail()}"

    def kill9(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    # ---- addresses

    def addr(self, service: str) -> tuple[str, int]:
        addrs = self.listeners.get(service)
        assert addrs, f"no `{service}` listener in listeners.json: {self.listeners}"
        return parse_addr(addrs[0])

    @property
    def smtp_addr(self) -> tuple[str, int]:
        return self.addr("smtp")

    @property
    def pop3_addr(self) -> tuple[str, int]:
        return self.addr("pop3")

    # ---- CLI

    def cli(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return run_postamt(self.binary, ["--config", str(self.config_path), *args], input=input, check=check, timeout=timeout, cwd=self.root)

    def add_user(self, name: str | None = None, password: str | None = None, admin: bool = False) -> tuple[str, str]:
        name = name or uniq("u")
        password = password or secrets.token_urlsafe(12)
        args = ["user", "add", name, "--password-stdin"] + (["--admin"] if admin else [])
        self.cli(*args, input=password + "\n")
        return name, password

    def add_alias(self, pattern: str, *targets: str) -> None:
        self.cli("alias", "add", pattern, *targets)

    def queue_list(self) -> str:
        return self.cli("queue", "list").stdout

    # ---- clients

    def smtp(self, timeout: float = 60.0) -> smtplib.SMTP:
        s = smtplib.SMTP(*self.smtp_addr, local_hostname=CLIENT_NAME, timeout=timeout)
        code, resp = s.ehlo()
        assert code == 250, f"EHLO: {code} {resp!r}"
        return s

    def raw_smtp(self, ehlo: bool = True, timeout: float = 30.0) -> RawClient:
        c = RawClient(self.smtp_addr, timeout)
        c.expect(220)
        if ehlo:
            c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        return c

    def pop3(self, user: str | None = None, password: str | None = None, timeout: float = 30.0) -> poplib.POP3:
        p = poplib.POP3(*self.pop3_addr, timeout=timeout)
        if user is not None:
            p.user(user)
            p.pass_(password)
        return p

    def raw_pop3(self, timeout: float = 30.0) -> RawClient:
        c = RawClient(self.pop3_addr, timeout)
        line = c.read_line()
        assert line.startswith(b"+OK"), f"POP3 greeting: {line!r}"
        return c

    def send(
        self,
        sender: str,
        rcpts: Iterable[str],
        data: bytes,
        mail_options: Iterable[str] = (),
    ) -> str:
        """Sends one message with smtplib; asserts 250s; returns the queue id."""
        with self.smtp() as s:
            return send_on(s, sender, rcpts, data, mail_options)

    # ---- TLS and submission (issue 3)

    @property
    def self_signed_cert(self) -> Path:
        """Where the server keeps the certificate it makes when `[tls]` is unset."""
        return self.data_dir / SELF_SIGNED_CERT

    @property
    def cafile(self) -> Path:
        """What a client trusts: the configured `[tls] cert`, else the self-signed one."""
        configured = self.config.get("tls", {}).get("cert")
        return Path(configured) if configured else self.self_signed_cert

    def tls_context(self, minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A verifying client context that trusts only this server's certificate."""
        return client_context(self.cafile, minimum, maximum)

    def smtp_starttls(self, service: str = "smtp", ctx: ssl.SSLContext | None = None, timeout: float = 60.0) -> smtplib.SMTP:
        """smtplib on a plaintext port, upgraded with STARTTLS (certificate
        checked for HOSTNAME) and greeted again with EHLO."""
        s = NamedSMTP(*self.addr(service), local_hostname=CLIENT_NAME, timeout=timeout)
        try:
            code, resp = s.ehlo()
            assert code == 250, f"EHLO: {code} {resp!r}"
            assert s.has_extn("starttls"), f"{service}: EHLO does not offer STARTTLS: {s.esmtp_features}"
            code, resp = s.starttls(context=ctx or self.tls_context())
            assert code == 220, f"STARTTLS: {code} {resp!r}"
            code, resp = s.ehlo()
            assert code == 250, f"EHLO after STARTTLS: {code} {resp!r}"
        except BaseException:
            s.close()
            raise
        return s

    def smtp_tls(self, service: str = "submissions", ctx: ssl.SSLContext | None = None, timeout: float = 60.0) -> smtplib.SMTP_SSL:
        """smtplib over implicit TLS (certificate checked for HOSTNAME), after EHLO."""
        s = NamedSMTP_SSL(*self.addr(service), local_hostname=CLIENT_NAME, timeout=timeout, context=ctx or self.tls_context())
        try:
            code, resp = s.ehlo()
            assert code == 250, f"EHLO: {code} {resp!r}"
        except BaseException:
            s.close()
            raise
        return s

    def submission(self, user: str, password: str, service: str = "submission", timeout: float = 60.0) -> smtplib.SMTP:
        """An authenticated submission session: STARTTLS on `submission`,
        implicit TLS on `submissions`; AUTH through smtplib's login()."""
        s = self.smtp_tls(service, timeout=timeout) if service == "submissions" else self.smtp_starttls(service, timeout=timeout)
        try:
            code, resp = s.login(user, password)
            assert code == 235, f"AUTH as {user}: {code} {resp!r}"
        except BaseException:
            s.close()
            raise
        return s

    def raw_tls_smtp(self, service: str = "submission", ehlo: bool = True, ctx: ssl.SSLContext | None = None,
                     timeout: float = 30.0, source_address: tuple[str, int] | None = None) -> RawClient:
        """A raw SMTP client inside TLS: STARTTLS on `smtp`/`submission`,
        implicit on `submissions`; EHLO sent again inside TLS if `ehlo`."""
        ctx = ctx or self.tls_context()
        if service == "submissions":
            c = RawClient.implicit_tls(self.addr(service), ctx, timeout=timeout, source_address=source_address)
            c.expect(220)
        else:
            c = RawClient(self.addr(service), timeout, source_address)
            c.expect(220)
            text = c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
            assert b"STARTTLS" in text.upper().split(b"\n"), f"{service}: no STARTTLS in EHLO: {text!r}"
            c.command(b"STARTTLS", 220)
            c.start_tls(ctx)
        if ehlo:
            c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        return c

    def raw_tls_pop3(self, service: str = "pop3s", ctx: ssl.SSLContext | None = None,
                     timeout: float = 30.0, source_address: tuple[str, int] | None = None) -> RawClient:
        """A raw POP3 client inside TLS (STLS on `pop3`, implicit on `pop3s`),
        past the greeting."""
        ctx = ctx or self.tls_context()
        if service == "pop3s":
            c = RawClient.implicit_tls(self.addr(service), ctx, timeout=timeout, source_address=source_address)
            line = c.read_line()
            assert line.startswith(b"+OK"), f"POP3 greeting: {line!r}"
        else:
            c = RawClient(self.addr(service), timeout, source_address)
            line = c.read_line()
            assert line.startswith(b"+OK"), f"POP3 greeting: {line!r}"
            c.send(b"STLS\r\n")
            line = c.read_line()
            assert line.startswith(b"+OK"), f"STLS: {line!r}"
            c.start_tls(ctx)
        return c

    def pop3_stls(self, user: str | None = None, password: str | None = None, timeout: float = 30.0) -> poplib.POP3:
        """poplib on the pop3 port after STLS (certificate checked for HOSTNAME)."""
        p = poplib.POP3(*self.pop3_addr, timeout=timeout)
        try:
            p.host = HOSTNAME  # poplib checks the certificate against .host
            resp = p.stls(context=self.tls_context())
            assert resp.startswith(b"+OK"), resp
            if user is not None:
                p.user(user)
                p.pass_(password)
        except BaseException:
            p.close()
            raise
        return p

    def pop3s(self, user: str | None = None, password: str | None = None, timeout: float = 30.0) -> poplib.POP3_SSL:
        """poplib over implicit TLS on the pop3s port."""
        p = NamedPOP3_SSL(*self.addr("pop3s"), timeout=timeout, context=self.tls_context())
        try:
            if user is not None:
                p.user(user)
                p.pass_(password)
        except BaseException:
            p.close()
            raise
        return p

    # ---- mailboxes

    def mailbox_path(self, user: str) -> Path:
        return self.data_dir / "mailboxes" / user

    def messages(self, user: str) -> list[bytes]:
        """Raw bytes of every message in `user`'s inbox (new/ and cur/),
        read through Python's `mailbox.Maildir`."""
        path = self.mailbox_path(user)
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            return []
        md = mailbox.Maildir(str(path), factory=None, create=False)
        out = []
        for key in sorted(md.keys()):
            try:
                out.append(md.get_bytes(key))
            except (KeyError, FileNotFoundError):
                continue  # moved by a concurrent POP3 session
        return out

    def wait_messages(self, user: str, count: int, timeout: float = 30.0) -> list[bytes]:
        """Waits until `user` has at least `count` messages; returns them all."""
        return wait_until(
            lambda: (lambda m: m if len(m) >= count else None)(self.messages(user)),
            timeout,
            f"{count} message(s) in the mailbox of {user} ({self.mailbox_path(user)})",
        )

    def wait_token(self, user: str, token: bytes, timeout: float = 30.0) -> bytes:
        """Waits for a message containing `token` in `user`'s inbox."""

        def find():
            for m in self.messages(user):
                if token in m:
                    return m
            return None

        return wait_until(find, timeout, f"a message containing {token!r} for {user}")

    # ---- logs

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def log(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, name: str, needle: str, timeout: float = 15.0) -> str:
        def found():
            text = self.log(name)
            return text if needle in text else None

        try:
            return wait_until(found, timeout, f"{needle!r} in {self.log_path(name)}", interval=0.1)
        except AssertionError as e:
            logs = self.data_dir / "logs"
            listing = sorted(p.name for p in logs.iterdir()) if logs.is_dir() else "(no logs dir)"
            raise AssertionError(f"{e}\nfiles in {logs}: {listing}\nlog tail: {self.log(name)[-2000:]}") from None


def run_postamt(
    binary: Path,
    args: list[str],
    input: str | None = None,
    check: bool = True,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Runs the binary once (bounded); with `check`, asserts exit 0."""
    cmd = [str(binary), *args]
    p = subprocess.run(
        cmd,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        cwd=cwd,
    )
    if check:
        assert p.returncode == 0, f"`{' '.join(cmd)}` exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def send_on(
    s: smtplib.SMTP,
    sender: str,
    rcpts: Iterable[str],
    data: bytes,
    mail_options: Iterable[str] = (),
) -> str:
    """One transaction on an open smtplib session; returns the queue id."""
    opts = list(mail_options)
    if s.has_extn("size"):
        opts.append(f"SIZE={len(data)}")
    code, resp = s.mail(sender, opts)
    assert code == 250, f"MAIL FROM:<{sender}> {opts}: {code} {resp!r}"
    for r in rcpts:
        code, resp = s.rcpt(r)
        assert code == 250, f"RCPT TO:<{r}>: {code} {resp!r}"
    code, resp = s.data(data)
    assert code == 250, f"DATA: {code} {resp!r}"
    assert resp.startswith(b"2.0.0 Ok: queued as "), f"250 reply to DATA: {resp!r}"
    return queue_id_from(resp)


def simple_message(token: str, subject: str = "test", body: bytes | None = None, sender: str = f"sender@{DOMAIN}", to: str = f"rcpt@{DOMAIN}") -> bytes:
    """A small CRLF message carrying `token` in a header and the body."""
    if body is None:
        body = f"Hello,\r\nthis is {token}.\r\nBye\r\n".encode()
    return (
        f"From: <{sender}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: {subject} {token}\r\n"
        f"Message-ID: <{token}@{CLIENT_NAME}>\r\n"
        f"X-Token: {token}\r\n"
        "\r\n"
    ).encode() + body


def pop3_retr(p: poplib.POP3, n: int) -> bytes:
    """RETR through poplib, rebuilt as the octets on the wire (CRLF lines)."""
    resp, lines, _octets = p.retr(n)
    assert resp.startswith(b"+OK"), resp
    return b"".join(line + b"\r\n" for line in lines)


def auth_plain(user: str, password: str) -> bytes:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


# --------------------------------------------------------------------------
# TLS and submission (issue 3)

SECURE_SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s")
# Every mail port of issue 3 on an ephemeral loopback port.
SECURE_LISTEN = {service: ["127.0.0.1:0"] for service in SECURE_SERVICES}
SELF_SIGNED_CERT = Path("tls") / "selfsigned-cert.pem"
SELF_SIGNED_KEY = Path("tls") / "selfsigned-key.pem"


def client_context(
    cafile: Path | str,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A verifying client context trusting only `cafile`."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def legacy_context(maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_1) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 up to `maximum` (deliberately weak:
    OpenSSL's security level 0, no verification), to prove the server
    refuses old protocol versions."""
    import warnings

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class NamedSMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to an address but checks the certificate
    (and sends SNI) for `tls_hostname` at STARTTLS."""

    tls_hostname = HOSTNAME

    def starttls(self, *args, **kwargs):
        self._host = self.tls_hostname
        return super().starttls(*args, **kwargs)


class NamedSMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL that connects to an address but checks the
    certificate (and sends SNI) for `tls_hostname`."""

    tls_hostname = HOSTNAME

    def _get_socket(self, host, port, timeout):
        self._host = self.tls_hostname
        return super()._get_socket(host, port, timeout)


class NamedPOP3_SSL(poplib.POP3_SSL):
    """poplib.POP3_SSL that connects to an address but checks the
    certificate (and sends SNI) for `tls_hostname`."""

    tls_hostname = HOSTNAME

    def _create_socket(self, timeout):
        sock = poplib.POP3._create_socket(self, timeout)
        self.host = self.tls_hostname
        try:
            return self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def der_of_pem(path: Path | str) -> bytes:
    """The DER bytes of the first certificate in a PEM file."""
    text = Path(path).read_text()
    m = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", text, re.S)
    assert m, f"no certificate in {path}"
    return ssl.PEM_cert_to_DER_cert(m.group(0))


def make_cert(directory: Path, name: str, hostname: str = HOSTNAME, days: int = 2) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for `hostname` (and 127.0.0.1) made
    with the openssl CLI; returns (cert, key) paths in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", str(days), "-subj", f"/CN={hostname}",
            "-addext", f"subjectAltName=DNS:{hostname},DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def peer_cert_der(addr: tuple[str, int], mode: str = "implicit", timeout: float = 15.0) -> bytes:
    """The certificate the server presents (unverified), over implicit TLS
    or after STARTTLS (`starttls-smtp`) / STLS (`stls-pop3`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = RawClient(addr, timeout)
    try:
        if mode == "starttls-smtp":
            c.expect(220)
            c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
            c.command(b"STARTTLS", 220)
        elif mode == "stls-pop3":
            assert c.read_line().startswith(b"+OK")
            c.send(b"STLS\r\n")
            line = c.read_line()
            assert line.startswith(b"+OK"), line
        else:
            assert mode == "implicit", mode
        c.start_tls(ctx)
        der = c.sock.getpeercert(binary_form=True)
        assert der, "no peer certificate"
        return der
    finally:
        c.close()


def non_loopback_ipv4() -> str | None:
    """This machine's outward IPv4 address (found without sending a packet),
    or None when there is none: for tests of what loopback clients may do
    and others may not."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("203.0.113.1", 9))  # TEST-NET-3: only picks a route
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def ehlo_keywords(text: bytes) -> dict[str, str]:
    """EHLO reply text (as RawClient.read_reply returns it) to
    {KEYWORD: params}, the greeting line left out."""
    out = {}
    for line in text.split(b"\n")[1:]:
        word, _, params = line.decode(errors="replace").partition(" ")
        out[word.upper()] = params
    return out


def smtp_auth_plain(c: RawClient, user: str, password: str) -> tuple[int, bytes]:
    """AUTH PLAIN with an initial response on a raw client: the reply."""
    c.send(b"AUTH PLAIN " + auth_plain(user, password) + b"\r\n")
    return c.read_reply()
