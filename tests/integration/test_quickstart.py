"""`postamt quickstart --no-serve`: writes a config that `check-config`
accepts, creates a demo user (the first admin) and prints a password that
really logs in, by POP3 and to the web admin, whose printed URL answers."""

from __future__ import annotations

import http.client
import re
import socket
import tomllib
import urllib.parse

import pytest

from support import Postamt, parse_addr, run_postamt


def password_candidates(output: str) -> list[str]:
    """Words printed after "password" (the format is free), then random-
    looking words; at most three, to keep failed logins (slow) few."""
    found: list[str] = []
    for line in output.splitlines():
        for m in re.finditer(r"password\S*\s*(?:is\s*)?[:=]?\s*(\S+)", line, re.I):
            found.append(m.group(1).strip("`'\".,;()[]<>"))
    for word in re.findall(r"[A-Za-z0-9_\-+/=]{12,64}", output):
        if re.search(r"[0-9]", word) and re.search(r"[A-Za-z]", word):
            found.append(word)
    out: list[str] = []
    for w in found:
        if w and w not in out and w.lower() not in ("stdin", "--password-stdin"):
            out.append(w)
    return out[:3]


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def http_request(host: str, port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        h = {"Host": f"{host}:{port}"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(1024 * 1024)
    finally:
        conn.close()


@pytest.mark.parametrize("domain", [None, "quick.example"], ids=["localhost", "domain"])
def test_quickstart_no_serve(postamt_bin, tmp_path, domain):
    d = tmp_path / "qs"
    args = ["quickstart", "--dir", str(d), "--no-serve"] + (["--domain", domain] if domain else [])
    res = run_postamt(postamt_bin, args, timeout=120, cwd=tmp_path)
    out = res.stdout + res.stderr
    cfg = d / "postamt.toml"
    assert cfg.is_file(), f"quickstart did not write {cfg}; output:\n{out}"
    run_postamt(postamt_bin, ["--config", str(cfg), "check-config"], cwd=tmp_path)

    config = tomllib.loads(cfg.read_text())
    want = domain or "localhost"
    assert config.get("hostname") == want or want in config.get("domains", []), (
        f"quickstart config is not for {want}: {config}"
    )

    users = run_postamt(postamt_bin, ["--config", str(cfg), "user", "list"], cwd=tmp_path).stdout
    names = [l.split()[0] for l in users.splitlines() if l.strip()]
    demo = next((n for n in names if n in out), None)
    assert demo, f"the demo user from `user list` ({names}) is not named in the quickstart output:\n{out}"
    # The first user is an admin (`user list`: name, role, created).
    assert len(names) == 1, f"quickstart made one user: {users}"
    role = next(l.split()[1] for l in users.splitlines() if l.split() and l.split()[0] == demo)
    assert role == "admin", f"quickstart's first user must be an admin: {users}"

    # The web admin's URL is printed: the configured admin listener.
    admin_addrs = config.get("listen", {}).get("admin") or []
    assert admin_addrs, f"quickstart enables no web admin: {config.get('listen')}"
    urls = [u.rstrip(".,;)`'\"") for u in re.findall(r"https?://[^\s`'\"<>]+", out)]
    host, port = parse_addr(admin_addrs[0])
    printed = [u for u in urls if urllib.parse.urlsplit(u).netloc in (f"{host}:{port}", f"[{host}]:{port}")]
    assert printed, f"no URL of the admin listener {admin_addrs[0]} in the output:\n{out}"
    admin_url = urllib.parse.urlsplit(printed[0])
    assert admin_url.scheme == "http", f"no [tls] in quickstart: plain HTTP on loopback ({printed[0]})"

    # The printed password logs in (on loopback ephemeral ports instead of
    # the configured ones).
    candidates = password_candidates(out)
    assert candidates, f"no password printed:\n{out}"
    srv = Postamt.from_config_file(postamt_bin, tmp_path, cfg)
    listen = config.get("listen", {})
    assert listen.get("pop3") or listen.get("pop3s"), f"quickstart enables no POP3 service: {listen}"
    # The admin listener keeps its printed address when that port is free
    # now (else, rarely, another process took it: an ephemeral port, same path).
    admin_listen = admin_addrs[0] if port_free(host, port) else f"{host}:0"
    srv.config["listen"] = {"smtp": ["127.0.0.1:0"], "pop3": ["127.0.0.1:0"], "admin": [admin_listen]}
    srv.rewrite_config()
    srv.start()
    try:
        ok = []
        for pw in candidates:
            p = srv.pop3()
            try:
                p.user(demo)
                p.pass_(pw)
                ok.append(pw)
                p.quit()
                break
            except Exception:  # noqa: BLE001 - poplib.error_proto for a wrong guess
                p.close()
        assert ok, f"none of the printed candidates {candidates} logs in as {demo}:\n{out}"

        # The printed URL answers, and the printed password logs in there.
        web_host, web_port = srv.addr("admin")
        assert admin_listen.endswith(":0") or (web_host, web_port) == (host, port), srv.listeners
        status, hdrs, body = http_request(web_host, web_port, "GET", admin_url.path or "/")
        assert status in (200, 303), f"GET {printed[0]}: {status} {body[:300]!r}"
        if status == 303:
            assert hdrs["location"].startswith("/login"), hdrs
        form = urllib.parse.urlencode({"user": demo, "password": ok[0], "next": ""}).encode()
        status, hdrs, body = http_request(web_host, web_port, "POST", "/login", form,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303 and "set-cookie" in hdrs, f"web login as {demo}: {status} {body[:300]!r}"
        cookie = hdrs["set-cookie"].split(";")[0]
        status, _, page = http_request(web_host, web_port, "GET", "/", headers={"Cookie": cookie})
        assert status == 200 and b"Dashboard" in page, f"the admin's dashboard: {status} {page[:300]!r}"
        status, _, page = http_request(web_host, web_port, "GET", "/users", headers={"Cookie": cookie})
        assert status == 200 and demo.encode() in page, f"an admin page: {status}"
        srv.stop()
    finally:
        srv.kill9()
