"""The web admin and its JSON API against the real `postamt serve` (issue 8),
with Python's urllib: logins and cookies, 401/403 route by route, CSRF,
bad input answered with 400 naming the field, API round trips (a user
created through the API logs in by POP3), settings written into the TOML
file with its comments, autoconfig XML, /metrics parsed line by line, the
guide at /docs/ without broken links, an XSS probe shown as text.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import tomllib
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

from support import DOMAIN, HOSTNAME, Postamt, uniq

ADMIN_LISTEN = {"admin": ["127.0.0.1:0"], "smtp": ["127.0.0.1:0"], "pop3": ["127.0.0.1:0"]}
COMMENT = "# Written by the admin tests: this comment must survive every save."


class Http:
    """A tiny HTTP client over http.client (no redirects followed, no cookie
    jar: the tests look at every header themselves)."""

    def __init__(self, addr: tuple[str, int]):
        self.host, self.port = addr

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
    ) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            h = {"Host": f"{self.host}:{self.port}"}
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read(8 * 1024 * 1024)
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def api(self, method: str, path: str, auth: tuple[str, str] | None = None, body=None, headers: dict | None = None):
        h = dict(headers or {})
        if auth:
            h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        status, hdrs, raw = self.request(method, "/api/v1" + path, data, h)
        try:
            parsed = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            parsed = raw.decode("utf-8", "replace")
        return status, hdrs, parsed


class Browser:
    """A logged-in web session: the cookie and the CSRF token."""

    def __init__(self, http: Http, user: str, password: str):
        self.http = http
        form = urllib.parse.urlencode({"user": user, "password": password, "next": ""}).encode()
        status, hdrs, body = http.request(
            "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 303, f"login of {user}: {status} {body[:300]!r}"
        self.set_cookie = hdrs["set-cookie"]
        self.cookie = self.set_cookie.split(";")[0]
        status, _, me = http.api("GET", "/me", headers={"Cookie": self.cookie})
        assert status == 200, me
        self.csrf = me["csrf_token"]

    def get(self, path: str) -> tuple[int, dict, str]:
        status, hdrs, body = self.http.request("GET", path, headers={"Cookie": self.cookie})
        return status, hdrs, body.decode("utf-8", "replace")

    def post(self, path: str, fields: dict, csrf: bool = True) -> tuple[int, dict, str]:
        f = dict(fields)
        if csrf:
            f["csrf"] = self.csrf
        status, hdrs, body = self.http.request(
            "POST",
            path,
            urllib.parse.urlencode(f).encode(),
            {"Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        return status, hdrs, body.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def admin_server(postamt_bin, tmp_path_factory):
    srv = Postamt(postamt_bin, tmp_path_factory.mktemp("postamt"), {"listen": ADMIN_LISTEN})
    srv.config_path.write_text(COMMENT + "\n" + srv.config_path.read_text())
    srv.start()
    try:
        yield srv
        srv.stop()
    finally:
        srv.kill9()


@pytest.fixture(scope="module")
def web(admin_server) -> Http:
    return Http(admin_server.addr("admin"))


@pytest.fixture(scope="module")
def boss(admin_server) -> tuple[str, str]:
    return admin_server.add_user(uniq("boss"), admin=True)


@pytest.fixture(scope="module")
def user(admin_server) -> tuple[str, str]:
    return admin_server.add_user(uniq("user"))


# Every admin API route: (method, path); `{u}` is a user name.
ADMIN_API = [
    ("GET", "/users"), ("POST", "/users"), ("GET", "/users/{u}"), ("DELETE", "/users/{u}"),
    ("PUT", "/users/{u}/password"), ("PUT", "/users/{u}/admin"), ("GET", "/users/{u}/mailbox"),
    ("GET", "/users/{u}/autoreply"), ("PUT", "/users/{u}/autoreply"), ("DELETE", "/users/{u}/autoreply"),
    ("GET", "/users/{u}/forward"), ("PUT", "/users/{u}/forward"), ("DELETE", "/users/{u}/forward"),
    ("GET", "/aliases"), ("POST", "/aliases"), ("GET", "/aliases/test?address=x"),
    ("GET", "/aliases/x"), ("DELETE", "/aliases/x"),
    ("GET", "/lists"), ("POST", "/lists"), ("GET", "/lists/l"), ("PATCH", "/lists/l"), ("DELETE", "/lists/l"),
    ("GET", "/lists/l/members"), ("POST", "/lists/l/members"), ("DELETE", "/lists/l/members/a@example.org"),
    ("GET", "/lists/l/moderation"), ("POST", "/lists/l/moderation/t/approve"),
    ("GET", "/queue"), ("POST", "/queue/flush"), ("GET", "/queue/0"), ("DELETE", "/queue/0"),
    ("POST", "/queue/0/hold"), ("POST", "/queue/0/release"), ("POST", "/queue/0/bounce"),
    ("GET", "/settings"), ("PUT", "/settings"), ("GET", "/logs"), ("GET", "/trace?queue_id=x"),
    ("GET", "/dashboard"), ("GET", f"/dns/{DOMAIN}"), ("GET", f"/dns/{DOMAIN}/check"),
    ("POST", f"/dkim/{DOMAIN}"), ("GET", "/tls"),
]

ADMIN_PAGES = ["/users", "/aliases", "/lists", "/directories", "/misc", "/logging", "/queue", "/trace", "/dns", "/tls"]


def test_every_admin_route_needs_credentials_and_refuses_users(web, user, boss):
    for method, path in ADMIN_API:
        p = path.format(u=user[0])
        status, hdrs, body = web.api(method, p, body={})
        assert status == 401, f"{method} {p} without credentials: {status} {body}"
        assert hdrs.get("www-authenticate", "").startswith("Basic"), f"{method} {p}"
        status, _, body = web.api(method, p, auth=user, body={})
        assert status == 403, f"{method} {p} as a non-admin: {status} {body}"
    # Still there, untouched.
    status, _, info = web.api("GET", f"/users/{user[0]}", auth=boss)
    assert status == 200 and info["admin"] is False


def test_a_user_cannot_open_an_admin_page(web, user):
    b = Browser(web, *user)
    for page in ADMIN_PAGES:
        status, _, html = b.get(page)
        assert status == 403, f"{page}: {status}"
        assert "for admins" in html
    status, hdrs, _ = b.get("/")
    assert status == 303 and hdrs["location"] == "/me"
    status, _, html = b.get("/me")
    assert status == 200 and user[0] in html


def test_login_cookie_and_logout(web, boss):
    b = Browser(web, *boss)
    attrs = [a.strip().lower() for a in b.set_cookie.split(";")]
    assert "httponly" in attrs and "samesite=strict" in attrs, b.set_cookie
    assert "secure" not in attrs, "plain HTTP on loopback: no Secure flag"
    status, _, html = b.get("/")
    assert status == 200 and "Dashboard" in html
    status, hdrs, _ = b.post("/logout", {})
    assert status == 303 and "max-age=0" in hdrs["set-cookie"].lower()
    status, hdrs, _ = b.get("/users")
    assert status == 303 and hdrs["location"].startswith("/login")

    status, hdrs, body = web.request(
        "POST", "/login", b"user=" + boss[0].encode() + b"&password=wrong",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 401 and "set-cookie" not in hdrs
    assert b"Wrong user name or password" in body


def test_csrf_is_enforced_on_forms_and_cookie_api_calls(web, boss):
    b = Browser(web, *boss)
    name = uniq("csrf")
    status, _, body = b.post("/users", {"name": name, "password": "pw-123"}, csrf=False)
    assert status == 403 and "CSRF" in body
    status, _, _ = b.post("/users", {"name": name, "password": "pw-123", "csrf": "0" * 64}, csrf=False)
    assert status == 403
    status, _, users = web.api("GET", "/users", auth=boss)
    assert name not in [u["name"] for u in users], "a refused form changed nothing"
    status, _, _ = web.api("POST", "/users", body={"name": name, "password": "pw-123"}, headers={"Cookie": b.cookie})
    assert status == 403
    status, _, _ = web.api(
        "POST", "/users", body={"name": name, "password": "pw-123"},
        headers={"Cookie": b.cookie, "X-CSRF-Token": b.csrf},
    )
    assert status == 201
    status, _, _ = web.api("POST", "/queue/flush", auth=boss, headers={"Origin": "https://evil.example"})
    assert status == 403


def test_api_user_can_log_in_by_pop3_and_round_trips(admin_server, web, boss):
    name, pw = uniq("api"), "Api-pass-1"
    status, _, body = web.api("POST", "/users", auth=boss, body={"name": name, "password": pw})
    assert status == 201, body
    p = admin_server.pop3(name, pw)
    try:
        assert p.stat()[0] == 0
    finally:
        p.quit()
    # Bad input: 400 naming the field, nothing applied.
    status, _, body = web.api("POST", "/users", auth=boss, body={"name": uniq("x")})
    assert status == 400 and body["field"] == "password", body
    status, _, body = web.api("POST", "/users", auth=boss, body={"name": "no good", "password": "p"})
    assert status == 400 and body["field"] == "name", body
    status, _, body = web.api("POST", "/users", auth=boss, body={"name": name, "password": "p"})
    assert status == 409, body

    status, _, _ = web.api("POST", "/aliases", auth=boss, body={"pattern": f"{name}-*", "targets": [name]})
    assert status == 201
    status, _, t = web.api("GET", f"/aliases/test?address={name}-x@{DOMAIN}", auth=boss)
    assert t["rule"] == {"kind": "wildcard_alias", "pattern": f"{name}-*"} and t["mailboxes"] == [name], t

    lst = uniq("l")
    status, _, body = web.api("POST", "/lists", auth=boss, body={"name": lst, "subject_prefix": "[x]\r\nBcc: a@b"})
    assert status == 400 and body["field"] == "subject_prefix", body
    status, _, body = web.api("GET", f"/lists/{lst}", auth=boss)
    assert status == 404, "nothing half-applied"
    status, _, body = web.api("POST", "/lists", auth=boss, body={"name": lst})
    assert status == 201, body
    status, _, body = web.api("POST", f"/lists/{lst}/members", auth=boss, body={"address": name})
    assert status == 201 and body["address"] == f"{name}@{DOMAIN}", body
    status, _, mine = web.api("GET", "/me/lists", auth=(name, pw))
    assert [m["list"] for m in mine] == [lst]
    status, _, _ = web.api("DELETE", f"/me/lists/{lst}", auth=(name, pw))
    assert status == 200
    status, _, members = web.api("GET", f"/lists/{lst}/members", auth=boss)
    assert members == []

    status, _, body = web.api("PUT", f"/users/{name}/autoreply", auth=boss, body={"subject": "a\nb", "body": "x"})
    assert status == 400 and body["field"] == "subject", body
    status, _, body = web.api("PUT", "/me/password", auth=(name, pw), body={"old": "nope", "new": "x"})
    assert status == 400 and body["field"] == "old", body
    status, _, _ = web.api("DELETE", f"/users/{name}", auth=boss)
    assert status == 200
    status, _, _ = web.api("GET", "/me", auth=(name, pw))
    assert status == 401


def test_queue_routes(admin_server, web, boss):
    # An alias to a remote address: the copy stays queued (no DNS in tests).
    alias = uniq("q")
    admin_server.add_alias(alias, "far@remote.test")
    qid = admin_server.send("someone@remote.test", [f"{alias}@{DOMAIN}"], b"Subject: q\r\n\r\nbody\r\n")
    status, _, q = web.api("GET", "/queue", auth=boss)
    assert status == 200

    def queued():
        s, _, q = web.api("GET", "/queue", auth=boss)
        return [e for e in q if e["id"] == qid]

    from support import wait_until

    wait_until(queued, 15, "the message in the queue")
    status, _, shown = web.api("GET", f"/queue/{qid}", auth=boss)
    assert status == 200 and shown["envelope"]["mail_from"] == "someone@remote.test"
    assert "Subject: q" in shown["headers"]
    status, _, r = web.api("POST", f"/queue/{qid}/hold", auth=boss)
    assert status == 200
    assert queued()[0]["held"] is True
    status, _, r = web.api("POST", f"/queue/{qid}/release", auth=boss)
    assert status == 200 and queued()[0]["held"] is False
    status, _, r = web.api("POST", "/queue/flush", auth=boss)
    assert status == 200 and r["server_notified"] is True, r
    status, _, r = web.api("DELETE", f"/queue/{qid}", auth=boss)
    assert status == 200
    status, _, _ = web.api("GET", f"/queue/{qid}", auth=boss)
    assert status == 404


def test_settings_written_into_the_toml_with_comments_kept(admin_server, web, boss):
    status, _, s = web.api("GET", "/settings", auth=boss)
    assert status == 200 and s["hostname"] == HOSTNAME
    status, _, r = web.api("PUT", "/settings", auth=boss, body={"smarthost": "relay.example.net:2525"})
    assert status == 200, r
    assert r["changed"] == ["delivery.smarthost"] and r["applied"] is True, r
    text = admin_server.config_path.read_text()
    assert COMMENT in text
    assert tomllib.loads(text)["delivery"]["smarthost"] == "relay.example.net:2525"
    status, _, r = web.api("PUT", "/settings", auth=boss, body={"create_mailboxes": "maybe"})
    assert status == 400 and r["field"] == "create_mailboxes", r
    status, _, r = web.api("PUT", "/settings", auth=boss, body={"no_such_key": 1})
    assert status == 400 and r["field"] == "no_such_key", r
    # The Misc page writes the same file.
    b = Browser(web, *boss)
    status, hdrs, _ = b.post(
        "/misc",
        {"hostname": HOSTNAME, "domains": DOMAIN, "smarthost": "", "copy_local_failures_to_postmaster": "on"},
    )
    assert status == 303
    _, _, html = b.get("/misc")
    assert "Saved:" in html, html
    text = admin_server.config_path.read_text()
    assert COMMENT in text and "smarthost" not in tomllib.loads(text).get("delivery", {})


def test_autoconfig_xml(admin_server, web):
    for path in [
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        f"/mail/config-v1.1.xml?emailaddress=alice%40{DOMAIN}",
    ]:
        status, hdrs, body = web.request("GET", path)
        assert status == 200 and hdrs["content-type"].startswith("application/xml")
        root = ET.fromstring(body)
        assert root.tag == "clientConfig"
        prov = root.find("emailProvider")
        assert prov.find("domain").text == DOMAIN
        incoming = prov.findall("incomingServer")
        pop = [s for s in incoming if s.get("type") == "pop3"]
        assert pop, body
        assert pop[0].find("hostname").text == HOSTNAME
        assert int(pop[0].find("port").text) == admin_server.addr("pop3")[1]
        assert pop[0].find("socketType").text == "STARTTLS"


METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.eE+-]+(Inf|NaN)?( -?[0-9]+)?$'
)


def test_metrics_parse_line_by_line(web):
    status, hdrs, body = web.request("GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain")
    lines = body.decode().splitlines()
    samples = 0
    for line in lines:
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        assert METRIC_LINE.match(line), f"not a Prometheus sample line: {line!r}"
        samples += 1
    assert samples > 0


def test_docs_reachable_without_broken_links(web):
    status, _, body = web.request("GET", "/docs/")
    assert status == 200
    seen, todo = set(), ["/docs/"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        status, _, page = web.request("GET", path)
        assert status == 200, f"{path}: {status}"
        for href in re.findall(rb'href="([^"#:]+)(?:#[^"]*)?"', page):
            target = urllib.parse.urljoin(path, href.decode())
            if target.startswith("/docs/"):
                todo.append(target)
    assert len(seen) > 3, sorted(seen)
    for page in ["/docs/web-admin.html", "/docs/api.html"]:
        assert web.request("GET", page)[0] == 200, page


def test_xss_probe_is_shown_as_text(web, boss):
    probe = "<script>alert(1)</script>"
    name, pw = uniq("xss"), "Xss-pass-1"
    web.api("POST", "/users", auth=boss, body={"name": name, "password": pw})
    status, _, _ = web.api("PUT", f"/users/{name}/autoreply", auth=boss, body={"subject": probe, "body": probe})
    assert status == 200
    b = Browser(web, *boss)
    status, hdrs, html = b.get(f"/users/{name}")
    assert status == 200
    assert probe not in html and "&lt;script&gt;alert(1)&lt;" in html
    assert "script-src 'self'" in hdrs["content-security-policy"]
