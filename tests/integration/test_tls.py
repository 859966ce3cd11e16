"""TLS end to end (issue 3): the self-signed certificate made on first start,
STARTTLS on smtp and submission, STLS on pop3, implicit TLS on submissions
and pop3s, TLS 1.2 and 1.3 only on every port, the STARTTLS/STLS injection
probe (CVE-2011-0411), certificates from files reloaded on SIGHUP and on
change without dropping open sessions, and `tests/tls_versions.py`."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import (
    CLIENT_NAME,
    DOMAIN,
    HOSTNAME,
    REPO,
    SECURE_LISTEN,
    SECURE_SERVICES,
    SELF_SIGNED_KEY,
    RawClient,
    client_context,
    der_of_pem,
    legacy_context,
    make_cert,
    peer_cert_der,
    simple_message,
    uniq,
    wait_until,
)

# How each port starts TLS (the modes of tests/tls_versions.py).
MODES = {
    "smtp": "starttls-smtp",
    "submission": "starttls-smtp",
    "submissions": "implicit",
    "pop3": "stls-pop3",
    "pop3s": "implicit",
}
TLS_VERSIONS_SCRIPT = REPO / "tests" / "tls_versions.py"


def tls_session(srv, service: str, ctx: ssl.SSLContext, server_hostname: str | None = HOSTNAME) -> RawClient:
    """A raw client on `service` inside TLS; the plaintext part (greeting,
    EHLO, STARTTLS/STLS) must succeed, so a failure can only be the handshake."""
    mode = MODES[service]
    c = RawClient(srv.addr(service), timeout=15)
    try:
        if mode == "starttls-smtp":
            c.expect(220)
            text = c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
            assert b"STARTTLS" in text.upper().split(b"\n"), f"{service}: no STARTTLS in EHLO: {text!r}"
            c.command(b"STARTTLS", 220)
        elif mode == "stls-pop3":
            line = c.read_line()
            assert line.startswith(b"+OK"), line
            c.send(b"STLS\r\n")
            line = c.read_line()
            assert line.startswith(b"+OK"), f"STLS: {line!r}"
        c.start_tls(ctx, server_hostname)
    except BaseException:
        c.close()
        raise
    return c


def capa(lines: list[bytes]) -> set[str]:
    return {line.decode(errors="replace").split(" ")[0].upper() for line in lines}


def exercise(c: RawClient, service: str) -> None:
    """One command inside TLS, proving the session works after the handshake."""
    if service in ("smtp", "submission"):
        text = c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        assert b"STARTTLS" not in text.upper().split(b"\n"), f"STARTTLS offered again inside TLS: {text!r}"
    elif service == "submissions":
        c.expect(220)
        text = c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        assert b"STARTTLS" not in text.upper().split(b"\n"), f"STARTTLS offered over implicit TLS: {text!r}"
    else:
        if service == "pop3s":
            line = c.read_line()
            assert line.startswith(b"+OK"), f"POP3 greeting over TLS: {line!r}"
        c.send(b"CAPA\r\n")
        line = c.read_line()
        assert line.startswith(b"+OK"), f"CAPA inside TLS: {line!r}"
        caps = capa(c.read_multiline())
        assert "STLS" not in caps, f"CAPA inside TLS lists STLS: {caps}"


def still_serving(srv, service: str) -> None:
    c = tls_session(srv, service, srv.tls_context())
    try:
        exercise(c, service)
    finally:
        c.close()


# --------------------------------------------------------------------------
# the self-signed certificate


def san_of(cert: Path) -> set[str]:
    """The subjectAltName entries of a PEM certificate, IPs normalised."""
    decoded = ssl._ssl._test_decode_cert(str(cert))  # the stdlib's own certificate decoder
    out = set()
    for kind, value in decoded.get("subjectAltName", ()):
        if kind == "IP Address":
            out.add("IP:" + str(ipaddress.ip_address(value.strip())))
        else:
            out.add(f"{kind}:{value}")
    return out


def test_self_signed_certificate_made_on_first_start(secure_server):
    srv = secure_server
    cert = srv.self_signed_cert
    key = srv.data_dir / SELF_SIGNED_KEY
    # listeners.json is written: the certificate must exist by now.
    assert cert.is_file(), f"no self-signed certificate at {cert}; tls dir: {list(cert.parent.iterdir()) if cert.parent.is_dir() else 'missing'}"
    assert key.is_file(), f"no private key at {key}"
    mode = stat.S_IMODE(key.stat().st_mode)
    assert mode & 0o077 == 0, f"the private key {key} is readable by others: mode {oct(mode)}"
    sans = san_of(cert)
    for want in (f"DNS:{HOSTNAME}", "DNS:localhost", "IP:127.0.0.1", "IP:::1"):
        assert want in sans, f"{want} missing from the certificate's subjectAltName: {sorted(sans)}"
    # The server presents exactly that certificate ...
    der = der_of_pem(cert)
    assert peer_cert_der(srv.addr("submissions")) == der, "the server presents another certificate than the one in the file"
    # ... and it verifies for every name it claims.
    for name in (HOSTNAME, "localhost", "127.0.0.1", "::1"):
        c = RawClient.implicit_tls(srv.addr("submissions"), srv.tls_context(), server_hostname=name, timeout=15)
        try:
            c.expect(220)
        finally:
            c.close()
    # Its fingerprint is logged (as `openssl x509 -fingerprint -sha256` prints it, or plain hex).
    digest = hashlib.sha256(der).hexdigest()
    colons = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    logs = srv.stderr_path.read_text(errors="replace") if srv.stderr_path else ""
    logs_dir = srv.data_dir / "logs"
    if logs_dir.is_dir():
        logs += "".join(p.read_text(errors="replace") for p in logs_dir.iterdir() if p.is_file())
    low = logs.lower()
    assert digest in low or colons in low, f"the certificate's SHA-256 fingerprint {colons.upper()} is not logged; stderr tail:\n{srv.stderr_tail()}"


def test_self_signed_certificate_survives_restart(postamt_factory):
    srv = postamt_factory({"listen": {"submissions": ["127.0.0.1:0"]}})
    first = der_of_pem(srv.self_signed_cert)
    assert peer_cert_der(srv.addr("submissions")) == first
    srv.stop()
    srv.start()
    assert der_of_pem(srv.self_signed_cert) == first, "a restart made a new self-signed certificate"
    assert peer_cert_der(srv.addr("submissions")) == first


@pytest.mark.parametrize("service", SECURE_SERVICES)
def test_verified_tls_on_every_port(secure_server, service):
    c = tls_session(secure_server, service, secure_server.tls_context())
    try:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3"), c.sock.version()
        exercise(c, service)
    finally:
        c.close()


# --------------------------------------------------------------------------
# protocol versions


@pytest.mark.parametrize("service", SECURE_SERVICES)
def test_tls11_refused(secure_server, service):
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        c = tls_session(secure_server, service, legacy_context(ssl.TLSVersion.TLSv1_1), server_hostname=None)
        try:
            exercise(c, service)
        finally:
            c.close()
    still_serving(secure_server, service)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("service", SECURE_SERVICES)
def test_tls12_and_tls13_accepted(secure_server, service, version):
    ctx = secure_server.tls_context(minimum=version, maximum=version)
    c = tls_session(secure_server, service, ctx)
    try:
        want = "TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
        assert c.sock.version() == want, c.sock.version()
        exercise(c, service)
    finally:
        c.close()


def run_versions_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TLS_VERSIONS_SCRIPT), "--timeout", "10", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_tls_versions_script_passes_on_every_port(secure_server):
    targets = []
    for service in SECURE_SERVICES:
        host, port = secure_server.addr(service)
        targets.append(f"{MODES[service]}={host}:{port}")
    p = run_versions_script(*targets)
    assert p.returncode == 0, f"tls_versions.py exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    out = p.stdout
    assert out.count("TLSv1.2  accepted") == len(targets), out
    assert out.count("TLSv1.3  accepted") == len(targets), out
    assert out.count("TLSv1.1  refused") == len(targets), out
    assert out.count("TLSv1.0  refused") == len(targets), out
    # The same from the server's own listeners.json, as CI runs it.
    p = run_versions_script("--listeners", str(secure_server.listeners_file))
    assert p.returncode == 0, f"tls_versions.py --listeners exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    assert p.stdout.count("TLSv1.1  refused") == len(targets), p.stdout
    assert p.stdout.count("TLSv1.3  accepted") == len(targets), p.stdout


def test_tls_versions_script_catches_tls11(tmp_path):
    """The probe itself can offer TLS 1.1 here (else the refusals above prove
    nothing): against an openssl s_server that allows it, the script fails."""
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    cert, key = make_cert(tmp_path, "legacy", "localhost")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
         "-cipher", "DEFAULT:@SECLEVEL=0", "-www", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, 15, "openssl s_server listening")
        p = run_versions_script(f"127.0.0.1:{port}")
        assert p.returncode == 1, f"tls_versions.py should fail on a TLS 1.1 server, exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
        assert "TLSv1.1  accepted" in p.stdout, p.stdout
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------
# STARTTLS / STLS behaviour


def test_smtp_starttls_then_mail(secure_server):
    srv = secure_server
    user, pw = srv.add_user()
    token = uniq("tls-")
    with srv.smtp() as plain:
        assert plain.has_extn("starttls"), f"MX port does not offer STARTTLS: {plain.esmtp_features}"
    s = srv.smtp_starttls("smtp")
    try:
        assert not s.has_extn("starttls"), f"STARTTLS offered again inside TLS: {s.esmtp_features}"
        assert not s.has_extn("auth"), f"the MX port offers AUTH: {s.esmtp_features}"
        code, resp = s.docmd("STARTTLS")
        assert 500 <= code <= 599, f"a second STARTTLS: {code} {resp!r}"
        s.sendmail(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    finally:
        s.quit()
    stored = srv.wait_token(user, token.encode())
    received = stored.split(b"\r\n\r\n", 1)[0]
    assert b"ESMTPS" in received, f"the Received header does not say the message came over TLS (RFC 3848 ESMTPS): {received[:400]!r}"


def test_pop3_stls(secure_server):
    srv = secure_server
    user, pw = srv.add_user()
    token = uniq("stls-")
    srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    srv.wait_token(user, token.encode())
    c = srv.raw_pop3()
    try:
        c.send(b"CAPA\r\n")
        assert c.read_line().startswith(b"+OK")
        before = capa(c.read_multiline())
        assert "STLS" in before, f"CAPA before TLS does not list STLS: {before}"
        c.send(b"STLS\r\n")
        assert c.read_line().startswith(b"+OK")
        c.start_tls(srv.tls_context())
        c.send(b"CAPA\r\n")
        assert c.read_line().startswith(b"+OK")
        after = capa(c.read_multiline())
        assert "STLS" not in after, f"CAPA inside TLS still lists STLS: {after}"
        assert "USER" in after, f"CAPA inside TLS does not list USER: {after}"
        c.send(b"STLS\r\n")
        line = c.read_line()
        assert line.startswith(b"-ERR"), f"a second STLS: {line!r}"
    finally:
        c.close()
    # poplib's own STLS, certificate checked for the host name.
    p = srv.pop3_stls(user, pw)
    try:
        assert p.stat()[0] == 1
        assert token.encode() in b"\r\n".join(p.retr(1)[1])
    finally:
        p.quit()


def test_pop3s(secure_server):
    srv = secure_server
    user, pw = srv.add_user()
    token = uniq("pop3s-")
    srv.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    srv.wait_token(user, token.encode())
    p = srv.pop3s()
    try:
        caps = {k.upper() for k in p.capa()}
        assert "STLS" not in caps, f"CAPA over implicit TLS lists STLS: {caps}"
        p.user(user)
        p.pass_(pw)
        assert p.stat()[0] == 1
        assert token.encode() in b"\r\n".join(p.retr(1)[1])
    finally:
        p.quit()


# --------------------------------------------------------------------------
# the injection probe (CVE-2011-0411): plaintext pipelined behind STARTTLS


@pytest.mark.parametrize("service", ["smtp", "submission"])
def test_starttls_injection_not_executed(secure_server, service):
    srv = secure_server
    c = RawClient(srv.addr(service), timeout=15)
    try:
        c.expect(220)
        c.command(b"EHLO x", 250)
        c.send(b"STARTTLS\r\nMAIL FROM:<a@b.example>\r\n")  # one write, one packet
        code, text = c.read_reply()
        assert code == 220, f"STARTTLS with a pipelined command: {code} {text!r}"
        c.start_tls(srv.tls_context())  # asserts nothing else came in plaintext
        extra = c.unsolicited(1.5)
        assert extra == b"", f"the server answered the injected MAIL inside TLS: {extra!r}"
        # MAIL without a new EHLO: refused because TLS reset the session, not
        # accepted as part of the injected transaction.
        c.send(b"MAIL FROM:<a@b.example>\r\n")
        code, text = c.read_reply()
        assert code == 503, f"MAIL right after STARTTLS (no EHLO) should be 503, got {code} {text!r}"
        # Replies stay in step: exactly one reply per command.
        c.send(b"NOOP\r\n")
        code, text = c.read_reply()
        assert code == 250, f"NOOP: {code} {text!r} (a reply out of step means an injected command ran)"
        c.command(b"EHLO " + CLIENT_NAME.encode(), 250)
        c.send(b"QUIT\r\n")
        code, _ = c.read_reply()
        assert code == 221
    finally:
        c.close()


def test_stls_injection_not_executed(secure_server):
    srv = secure_server
    c = srv.raw_pop3()
    try:
        c.send(b"STLS\r\nUSER demo\r\n")  # one write, one packet
        line = c.read_line()
        assert line.startswith(b"+OK"), f"STLS with a pipelined command: {line!r}"
        c.start_tls(srv.tls_context())
        extra = c.unsolicited(1.5)
        assert extra == b"", f"the server answered the injected USER inside TLS: {extra!r}"
        c.send(b"PASS x\r\n")
        line = c.read_line()
        assert line.startswith(b"-ERR"), f"PASS with no USER inside TLS: {line!r}"
        c.send(b"QUIT\r\n")
        line = c.read_line()
        assert line.startswith(b"+OK"), f"QUIT: {line!r} (a reply out of step means an injected command ran)"
    finally:
        c.close()


# --------------------------------------------------------------------------
# certificates from files, reloaded without a restart


def install(cert: Path, key: Path, live: Path) -> None:
    """Puts a certificate in place as a renewal tool would: each file
    replaced atomically, the key first."""
    for src, name in ((key, "key.pem"), (cert, "cert.pem")):
        tmp = live / f".{name}.new"
        shutil.copyfile(src, tmp)
        os.replace(tmp, live / name)


def presented(srv) -> dict[str, bytes]:
    return {service: peer_cert_der(srv.addr(service), MODES[service]) for service in SECURE_SERVICES}


def wait_presenting(srv, der: bytes, timeout: float, what: str) -> None:
    def check():
        got = presented(srv)
        return all(v == der for v in got.values())

    try:
        wait_until(check, timeout, what, interval=0.5)
    except AssertionError:
        got = presented(srv)
        stale = sorted(k for k, v in got.items() if v != der)
        raise AssertionError(f"{what}: still another certificate on {stale} after {timeout}s\n{srv.stderr_tail()}") from None


def test_configured_certificate_and_reload(postamt_factory, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    made = tmp_path / "made"
    a = make_cert(made, "a")
    b = make_cert(made, "b")
    c = make_cert(made, "c")
    live = tmp_path / "live"
    live.mkdir()
    install(*a, live)
    srv = postamt_factory({
        "listen": SECURE_LISTEN,
        "tls": {"cert": str(live / "cert.pem"), "key": str(live / "key.pem")},
    })
    der_a, der_b, der_c = (der_of_pem(x[0]) for x in (a, b, c))
    assert presented(srv) == {s: der_a for s in SECURE_SERVICES}, "the configured certificate is not the one presented"
    # Verified against the configured certificate, on every port.
    for service in SECURE_SERVICES:
        still_serving(srv, service)

    user, pw = srv.add_user()
    # Sessions opened under certificate A.
    smtp_a = srv.smtp_starttls("smtp")
    pop_a = srv.pop3s(user, pw)
    try:
        # SIGHUP: new connections get B at once (bounded wait), old ones go on.
        install(*b, live)
        srv.proc.send_signal(signal.SIGHUP)
        wait_presenting(srv, der_b, 10, "certificate B after SIGHUP")
        assert smtp_a.noop()[0] == 250, "an open TLS session died on SIGHUP"
        token = uniq("reload-")
        smtp_a.sendmail(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
        srv.wait_token(user, token.encode())
        assert pop_a.noop().startswith(b"+OK"), "an open POP3S session died on SIGHUP"
        assert pop_a.stat()[0] == 0, "the POP3 session lost its snapshot"

        # A broken file: SIGHUP keeps the working certificate and the server.
        (live / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert srv.running(), f"the server died on SIGHUP with a broken certificate:\n{srv.stderr_tail()}"
        assert presented(srv) == {s: der_b for s in SECURE_SERVICES}, "a broken certificate replaced the working one"

        # No signal: the server notices the files changed (about 10 s).
        install(*c, live)
        wait_presenting(srv, der_c, 30, "certificate C picked up without a signal")
        assert smtp_a.noop()[0] == 250, "an open TLS session died on the automatic reload"
        assert pop_a.noop().startswith(b"+OK")
        # Clients that trust only C verify the new certificate by name.
        ctx = client_context(c[0])
        for service in SECURE_SERVICES:
            sess = tls_session(srv, service, ctx)
            try:
                exercise(sess, service)
            finally:
                sess.close()
    finally:
        try:
            smtp_a.quit()
        finally:
            pop_a.quit()


def test_sni_picks_the_certificate(postamt_factory, tmp_path):
    """`[[tls.sni]]`: a client asking for another host name gets that name's
    certificate; every other name, and no SNI at all, gets `[tls] cert`."""
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    other = "mail.other.example"
    main_cert, main_key = make_cert(tmp_path, "main")
    sni_cert, sni_key = make_cert(tmp_path, "other", other)
    srv = postamt_factory(
        {"listen": SECURE_LISTEN, "tls": {"cert": str(main_cert), "key": str(main_key)}},
        start=False,
    )
    # support.to_toml writes no arrays of tables: append the entry by hand.
    with open(srv.config_path, "a") as f:
        f.write(f'\n[[tls.sni]]\nhostname = "{other}"\ncert = "{sni_cert}"\nkey = "{sni_key}"\n')
    srv.start()
    der_main, der_sni = der_of_pem(main_cert), der_of_pem(sni_cert)
    for service in SECURE_SERVICES:
        for name, ca, want in ((other, sni_cert, der_sni), (HOSTNAME, main_cert, der_main), (None, main_cert, der_main)):
            ctx = client_context(ca)
            if name is None:
                ctx.check_hostname = False  # no SNI: an IP literal is sent as nothing
            c = tls_session(srv, service, ctx, server_hostname=name)
            try:
                got = c.sock.getpeercert(binary_form=True)
                assert got == want, f"{service} with SNI {name!r}: wrong certificate"
                exercise(c, service)
            finally:
                c.close()
