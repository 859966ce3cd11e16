#!/usr/bin/env python3
"""Which TLS protocol versions does a mail server accept?

For every target, one connection per protocol version (TLS 1.0, 1.1, 1.2,
1.3; SSL 3 too if this Python's OpenSSL still has it), each client limited
to exactly that version and offering every cipher OpenSSL has (security
level 0), so an old version is refused only if the server refuses it.

usage:
    tls_versions.py [--mode MODE] [--timeout SECONDS] TARGET [TARGET ...]
    tls_versions.py --listeners DATA_DIR/run/listeners.json [TARGET ...]

    TARGET  HOST:PORT or [IPV6]:PORT, or MODE=HOST:PORT to give one target a
            mode of its own
    MODE    implicit       TLS from the first byte (465, 993, 995; default)
            starttls-smtp  EHLO, STARTTLS (25, 587)
            stls-pop3      STLS (110)
            starttls-imap  STARTTLS (143)

    --listeners reads the file `postamt serve` writes and probes every TLS
            service in it with its mode (smtp and submission: starttls-smtp,
            pop3: stls-pop3, imap: starttls-imap, submissions, pop3s and
            imaps: implicit; a wildcard address is probed on loopback)

example:
    tests/tls_versions.py starttls-smtp=127.0.0.1:25 starttls-smtp=127.0.0.1:587 \\
        implicit=127.0.0.1:465 stls-pop3=127.0.0.1:110 implicit=127.0.0.1:995
    tests/tls_versions.py --listeners /var/lib/postamt/run/listeners.json

exit status:
    0  every target accepts TLS 1.2 or 1.3 and nothing older
    1  some target accepts a version below TLS 1.2, or no version at all
    2  something could not be tested (connection failed, STARTTLS refused,
       this client cannot offer an old version, bad arguments)

Only the Python standard library is used; no certificate is verified (this
is about protocol versions, not trust).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import ssl
import sys
import warnings
from dataclasses import dataclass

MODES = ("implicit", "starttls-smtp", "stls-pop3", "starttls-imap")
MAX_LINE = 8192
MAX_LINES = 100

# (label, version, modern): modern versions are the ones a server should accept.
VERSIONS: list[tuple[str, ssl.TLSVersion, bool]] = []
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    if getattr(ssl, "HAS_SSLv3", False):
        VERSIONS.append(("SSLv3", ssl.TLSVersion.SSLv3, False))
    VERSIONS += [
        ("TLSv1.0", ssl.TLSVersion.TLSv1, False),
        ("TLSv1.1", ssl.TLSVersion.TLSv1_1, False),
        ("TLSv1.2", ssl.TLSVersion.TLSv1_2, True),
        ("TLSv1.3", ssl.TLSVersion.TLSv1_3, True),
    ]

# OpenSSL reasons meaning "this client could not even offer the version".
CLIENT_CANNOT = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE")


class CannotTest(Exception):
    """The target could not be probed at all (not a verdict on TLS)."""


@dataclass
class Target:
    mode: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} ({self.mode})"


@dataclass
class Outcome:
    label: str
    modern: bool
    accepted: bool
    detail: str
    untestable: bool = False


# `[listen]` service -> how it starts TLS (services not named have no TLS).
SERVICE_MODES = {
    "smtp": "starttls-smtp",
    "submission": "starttls-smtp",
    "submissions": "implicit",
    "pop3": "stls-pop3",
    "pop3s": "implicit",
    "imap": "starttls-imap",
    "imaps": "implicit",
}


def targets_from_listeners(path: str) -> list[Target]:
    """Every TLS-capable listener in postamt's `run/listeners.json`
    (`{"service": ["ip:port", ...]}`); wildcard addresses become loopback."""
    import json

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    out = []
    for service, addrs in data.items():
        mode = SERVICE_MODES.get(service)
        if mode is None or not isinstance(addrs, list):
            continue
        for addr in addrs:
            t = parse_target(str(addr), mode)
            if t.host in ("0.0.0.0", ""):
                t.host = "127.0.0.1"
            elif t.host == "::":
                t.host = "::1"
            out.append(t)
    return out


def parse_target(text: str, default_mode: str) -> Target:
    mode = default_mode
    if "=" in text:
        mode, _, text = text.partition("=")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {text!r} is not HOST:PORT")
    return Target(mode, host.strip("[]"), int(port))


class Lines:
    """Bounded line reader over a plain socket (before TLS)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise CannotTest(f"line longer than {MAX_LINE} bytes")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CannotTest(f"connection closed before TLS; got {self.buf[:200]!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def smtp_reply(self) -> tuple[int, bytes]:
        for _ in range(MAX_LINES):
            line = self.line()
            if len(line) < 3 or not line[:3].isdigit():
                raise CannotTest(f"not an SMTP reply: {line[:200]!r}")
            if line[3:4] != b"-":
                return int(line[:3]), line
        raise CannotTest("SMTP reply too long")


def negotiate(sock: socket.socket, mode: str) -> None:
    """The plaintext dialogue before the handshake."""
    lines = Lines(sock)
    if mode == "starttls-smtp":
        code, text = lines.smtp_reply()
        if code != 220:
            raise CannotTest(f"greeting: {text[:200]!r}")
        sock.sendall(b"EHLO tls-versions.invalid\r\n")
        code, text = lines.smtp_reply()
        if code != 250:
            raise CannotTest(f"EHLO: {text[:200]!r}")
        sock.sendall(b"STARTTLS\r\n")
        code, text = lines.smtp_reply()
        if code != 220:
            raise CannotTest(f"STARTTLS: {text[:200]!r}")
    elif mode == "stls-pop3":
        line = lines.line()
        if not line.startswith(b"+OK"):
            raise CannotTest(f"greeting: {line[:200]!r}")
        sock.sendall(b"STLS\r\n")
        line = lines.line()
        if not line.startswith(b"+OK"):
            raise CannotTest(f"STLS: {line[:200]!r}")
    elif mode == "starttls-imap":
        line = lines.line()
        if not line.startswith(b"* OK"):
            raise CannotTest(f"greeting: {line[:200]!r}")
        sock.sendall(b"t1 STARTTLS\r\n")
        for _ in range(MAX_LINES):
            line = lines.line()
            if line.startswith(b"t1 "):
                break
        else:
            raise CannotTest("no tagged reply to STARTTLS")
        if not line.startswith(b"t1 OK"):
            raise CannotTest(f"STARTTLS: {line[:200]!r}")
    if lines.buf:
        raise CannotTest(f"server sent more in plaintext after agreeing to TLS: {lines.buf[:200]!r}")


def sni_name(host: str) -> str | None:
    """The name to send as SNI: none for an IP address literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def context_for(version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    # Offer everything this OpenSSL has: refusal must come from the server.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def probe(target: Target, label: str, version: ssl.TLSVersion, modern: bool, timeout: float) -> Outcome:
    try:
        ctx = context_for(version)
    except (ssl.SSLError, ValueError) as e:
        return Outcome(label, modern, False, f"this client cannot offer it: {e}", untestable=True)
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except OSError as e:
        raise CannotTest(f"cannot connect: {e}") from None
    try:
        try:
            negotiate(sock, target.mode)
        except OSError as e:
            raise CannotTest(f"before TLS: {e}") from None
        try:
            tls = ctx.wrap_socket(sock, server_hostname=sni_name(target.host))
        except ssl.SSLError as e:
            reason = getattr(e, "reason", None) or ""
            if str(reason) in CLIENT_CANNOT:
                return Outcome(label, modern, False, f"this client cannot offer it: {e}", untestable=True)
            return Outcome(label, modern, False, f"refused ({reason or e})")
        except (ConnectionError, EOFError) as e:
            return Outcome(label, modern, False, f"refused (connection closed: {e.__class__.__name__})")
        except TimeoutError:
            raise CannotTest(f"{label}: handshake timed out after {timeout}s") from None
        try:
            got = tls.version() or "?"
            cipher = (tls.cipher() or ("?",))[0]
        finally:
            tls.close()
        return Outcome(label, modern, True, f"accepted ({got}, {cipher})")
    finally:
        sock.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description="Show which TLS versions mail servers accept; fail if anything below TLS 1.2 is.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("usage:")[1] if __doc__ else None,
    )
    ap.add_argument("--mode", default="implicit", choices=MODES, help="default mode for targets without MODE= (default: implicit)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per connection step (default 10)")
    ap.add_argument("--listeners", metavar="FILE", help="probe every TLS service named in postamt's run/listeners.json")
    ap.add_argument("targets", nargs="*", metavar="TARGET")
    args = ap.parse_args(argv)
    try:
        targets = [parse_target(t, args.mode) for t in args.targets]
        if args.listeners:
            targets += targets_from_listeners(args.listeners)
    except (ValueError, OSError) as e:
        ap.error(str(e))
    if not targets:
        ap.error("no targets (give TARGETs or --listeners with TLS services in it)")

    weak, broken, untested = [], [], []
    for target in targets:
        print(target)
        try:
            outcomes = [probe(target, label, v, modern, args.timeout) for label, v, modern in VERSIONS]
        except CannotTest as e:
            print(f"  cannot test: {e}")
            untested.append(str(target))
            continue
        for o in outcomes:
            print(f"  {o.label:8} {o.detail}")
        if any(o.accepted and not o.modern for o in outcomes):
            weak.append(str(target))
        if not any(o.accepted and o.modern for o in outcomes):
            broken.append(str(target))
        if any(o.untestable and not o.modern for o in outcomes):
            untested.append(f"{target} (this client cannot offer every old version)")

    if weak or broken:
        for t in weak:
            print(f"FAIL: {t} accepts a protocol version below TLS 1.2")
        for t in broken:
            print(f"FAIL: {t} accepts neither TLS 1.2 nor TLS 1.3")
        return 1
    if untested:
        for t in untested:
            print(f"CANNOT TEST: {t}")
        return 2
    print(f"OK: {len(targets)} target(s) accept only TLS 1.2 and newer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
