"""The admin listener over HTTPS (issue 8): with `[tls] cert/key` the web
admin is served over TLS with that certificate (verified by the client),
its session cookie carries `Secure`, plain HTTP to the same port gets no
page; without `[tls]`, an admin listener outside loopback serves nothing
and says why.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import ssl
import urllib.parse

import pytest

from support import HOSTNAME, make_cert, parse_addr, wait_until

NOT_LOOPBACK_MESSAGE = "key `listen.admin[0]`: `0.0.0.0:0` is not a loopback address"


def https(addr, ctx, method, path, body=None, headers=None, server_hostname=HOSTNAME):
    """One HTTPS request; the certificate is checked against `ctx` for HOSTNAME."""
    host, port = addr
    conn = http.client.HTTPSConnection(host, port, timeout=30, context=ctx)
    # Connect to the address, verify the certificate for the name.
    conn.sock = ctx.wrap_socket(socket.create_connection(addr, timeout=30), server_hostname=server_hostname)
    try:
        h = {"Host": f"{HOSTNAME}:{port}"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(4 * 1024 * 1024)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tls_admin(postamt_bin, tmp_path_factory):
    from support import Postamt

    root = tmp_path_factory.mktemp("postamt-https")
    cert, key = make_cert(root / "certs", "admin")
    srv = Postamt(postamt_bin, root, {
        "listen": {"admin": ["127.0.0.1:0"], "smtp": ["127.0.0.1:0"]},
        "tls": {"cert": str(cert), "key": str(key)},
    })
    srv.start()
    try:
        yield srv
        srv.stop()
    finally:
        srv.kill9()


@pytest.fixture(scope="module")
def ctx(tls_admin):
    c = ssl.create_default_context(cafile=str(tls_admin.cafile))
    c.minimum_version = ssl.TLSVersion.TLSv1_2
    return c


def test_login_page_over_verified_https(tls_admin, ctx):
    status, hdrs, body = https(tls_admin.addr("admin"), ctx, "GET", "/login")
    assert status == 200, body[:300]
    assert b"<form" in body and b'name="password"' in body, body[:500]
    assert hdrs.get("content-type", "").startswith("text/html")


def test_the_certificate_is_really_checked(tls_admin):
    # A client that does not trust the configured certificate must fail:
    # proof that the check above verified something.
    with pytest.raises(ssl.SSLCertVerificationError):
        https(tls_admin.addr("admin"), ssl.create_default_context(), "GET", "/login")
    # And the served certificate is the configured one.
    raw = ssl.create_default_context(cafile=str(tls_admin.cafile))
    raw.check_hostname = False
    with socket.create_connection(tls_admin.addr("admin"), timeout=30) as s:
        with raw.wrap_socket(s) as t:
            served = t.getpeercert(binary_form=True)
    expected = ssl.PEM_cert_to_DER_cert(tls_admin.cafile.read_text())
    assert served == expected


def test_session_cookie_is_secure_and_works_over_https(tls_admin, ctx):
    user, password = tls_admin.add_user(admin=True)
    form = urllib.parse.urlencode({"user": user, "password": password, "next": ""}).encode()
    status, hdrs, body = https(tls_admin.addr("admin"), ctx, "POST", "/login", form,
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303, body[:300]
    set_cookie = hdrs["set-cookie"]
    attrs = [a.strip().lower() for a in set_cookie.split(";")]
    assert "secure" in attrs, f"no Secure flag on the session cookie over HTTPS: {set_cookie}"
    assert "httponly" in attrs and "samesite=strict" in attrs, set_cookie
    cookie = set_cookie.split(";")[0]
    status, _, page = https(tls_admin.addr("admin"), ctx, "GET", "/", headers={"Cookie": cookie})
    assert status == 200 and b"Dashboard" in page, page[:300]
    # The JSON API with Basic auth, over the same TLS.
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, _, raw = https(tls_admin.addr("admin"), ctx, "GET", "/api/v1/users",
                           headers={"Authorization": "Basic " + auth})
    assert status == 200, raw[:300]
    assert user in json.dumps(json.loads(raw))


def test_plain_http_to_the_https_port_gets_no_page(tls_admin):
    host, port = tls_admin.addr("admin")
    conn = http.client.HTTPConnection(host, port, timeout=15)
    try:
        try:
            conn.request("GET", "/login", headers={"Host": f"{host}:{port}"})
            r = conn.getresponse()
            got = (r.status, r.read(4096))
        except (http.client.HTTPException, OSError) as e:
            got = e
    finally:
        conn.close()
    assert not isinstance(got, tuple), f"plain HTTP was answered on the HTTPS port: {got!r}"
    # The TLS listener is still fine afterwards.
    ctx = ssl.create_default_context(cafile=str(tls_admin.cafile))
    assert https((host, port), ctx, "GET", "/login")[0] == 200


def test_plain_http_outside_loopback_is_refused(postamt_factory, postamt_bin, tmp_path):
    """0.0.0.0 without [tls]: the admin listener must not serve passwords in
    plaintext. The configuration is refused as a whole (by `check-config`
    and by `serve`, before anything is bound), naming the key and the fix."""
    srv = postamt_factory({"listen": {"admin": ["0.0.0.0:0"], "smtp": ["127.0.0.1:0"]}}, start=False)
    with pytest.raises(AssertionError) as refused:
        srv.start()
    text = str(refused.value)
    assert NOT_LOOPBACK_MESSAGE in text and "set [tls] cert and key" in text, text
    check = subprocess.run([str(postamt_bin), "--config", str(srv.config_path), "check-config"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert check.returncode != 0, check.stdout
    assert NOT_LOOPBACK_MESSAGE in check.stderr, check.stderr
