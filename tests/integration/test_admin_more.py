"""More of the web admin's API against the real `postamt serve` (issue 8),
with the fixtures of test_admin.py: a queued message bounced through the
API, moderation of real held posts, the log viewer's filters, the TLS
route against what Python's ssl module reads from the listeners, every
write route refusing bad input with a 400 naming the field and changing
nothing, `/metrics` read by prometheus_client after real traffic, and the
`[admin] allow_plaintext_http` opt-in.
"""

from __future__ import annotations

import email
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import time
from datetime import datetime, timezone

import pytest

from support import DOMAIN, HOSTNAME, Postamt, make_cert, simple_message, uniq, wait_until

# The fixtures and clients of test_admin.py (imported fixtures are used by
# pytest as if defined here: one server for this module).
from test_admin import ADMIN_LISTEN, Http, admin_server, boss, user, web  # noqa: F401

REMOTE = "remote.test"  # no DNS in these tests: mail there stays queued


def queued(web: Http, boss, qid: str) -> dict | None:
    status, _, q = web.api("GET", "/queue", auth=boss)
    assert status == 200, q
    return next((e for e in q if e["id"] == qid), None)


def wait_deferred(web: Http, boss, qid: str) -> dict:
    """Waits until `qid` had a delivery attempt and waits for the next."""
    return wait_until(
        lambda: (lambda e: e if e and e["attempts"] >= 1 else None)(queued(web, boss, qid)),
        30,
        f"{qid} deferred after a first attempt",
        interval=0.2,
    )


def wait_gone(web: Http, boss, qid: str) -> None:
    def gone():
        status, _, _ = web.api("GET", f"/queue/{qid}", auth=boss)
        return status == 404 and queued(web, boss, qid) is None

    wait_until(gone, 30, f"{qid} gone from the queue", interval=0.2)


def with_token(srv: Postamt, user: str, token: str) -> list[bytes]:
    return [m for m in srv.messages(user) if token.encode() in m]


# --------------------------------------------------------------------------
# queue bounce


def test_queue_bounce_through_the_api(admin_server, web, boss):
    srv = admin_server
    sender, _ = srv.add_user(uniq("bsender"))
    alias = uniq("far")
    srv.add_alias(alias, f"nobody@{REMOTE}")
    token = uniq("bounceme-")
    qid = srv.send(
        f"{sender}@{DOMAIN}",
        [f"{alias}@{DOMAIN}"],
        simple_message(token, subject="Please bounce", sender=f"{sender}@{DOMAIN}", to=f"{alias}@{DOMAIN}"),
    )
    entry = wait_deferred(web, boss, qid)
    assert entry["pending"] and entry["held"] is False, entry
    assert srv.messages(sender) == [], "nothing bounced yet"

    status, _, r = web.api("POST", f"/queue/{qid}/bounce", auth=boss)
    assert status == 200 and r["recipients"] == 1, r

    raw = srv.wait_token(sender, token.encode())
    report = email.message_from_bytes(raw)
    assert report.get_content_type() == "multipart/report", report.get_content_type()
    assert "mailer-daemon" in (report["From"] or "").lower() or "postmaster" in (report["From"] or "").lower(), report["From"]
    assert b"5.0.0" in raw, "the bounce carries the admin's status"
    wait_gone(web, boss, qid)
    assert len(with_token(srv, sender, token)) == 1, "exactly one bounce"

    status, _, r = web.api("POST", f"/queue/{qid}/bounce", auth=boss)
    assert status == 404, r


# --------------------------------------------------------------------------
# moderation


def test_moderation_approve_and_reject_through_the_api(admin_server, web, boss):
    srv = admin_server
    owner, _ = srv.add_user(uniq("owner"))
    m1, _ = srv.add_user(uniq("mem"))
    m2, _ = srv.add_user(uniq("mem"))
    poster, _ = srv.add_user(uniq("poster"))
    name = uniq("mod")
    status, _, lst = web.api(
        "POST", "/lists", auth=boss, body={"name": name, "owner": f"{owner}@{DOMAIN}", "posting": "moderated"}
    )
    assert status == 201 and lst["posting"] == "moderated", lst
    for m in (m1, m2):
        status, _, body = web.api("POST", f"/lists/{name}/members", auth=boss, body={"address": m})
        assert status == 201, body
    list_addr, from_addr = f"{name}@{DOMAIN}", f"{poster}@{DOMAIN}"

    def held(token: str) -> dict | None:
        status, _, q = web.api("GET", f"/lists/{name}/moderation", auth=boss)
        assert status == 200, q
        return next((h for h in q if token in (h.get("subject") or "")), None)

    # A post is held: in the moderation queue, held in the mail queue, with nobody.
    t1 = uniq("approve-")
    qid1 = srv.send(from_addr, [list_addr], simple_message(t1, subject="First", sender=from_addr, to=list_addr))
    h1 = wait_until(lambda: held(t1), 30, f"{t1} in the moderation queue", interval=0.2)
    assert h1["queue_id"] == qid1 and h1["sender"].lower() == from_addr.lower(), h1
    entry = wait_until(lambda: (lambda e: e if e and e["held"] else None)(queued(web, boss, qid1)), 30, f"{qid1} held")
    assert entry["held"] is True
    srv.wait_token(owner, t1.encode())  # the owner was asked
    for m in (m1, m2):
        assert not with_token(srv, m, t1), f"{m} got a post waiting for approval"

    status, _, r = web.api("POST", f"/lists/{name}/moderation/{h1['token']}/approve", auth=boss)
    assert status == 200 and r["approved"] is True and r["recipients"] == 1 and r["queue_id"] == qid1, r
    for m in (m1, m2):
        copy = email.message_from_bytes(srv.wait_token(m, t1.encode()))
        assert f"<{name}.{DOMAIN}>".lower() in (copy["List-Id"] or "").lower(), dict(copy)
    wait_gone(web, boss, qid1)
    for m in (m1, m2):
        assert len(with_token(srv, m, t1)) == 1, f"{m}: one copy"
    assert held(t1) is None
    status, _, r = web.api("POST", f"/lists/{name}/moderation/{h1['token']}/approve", auth=boss)
    assert status == 404, f"a used token: {status} {r}"

    # Another post is rejected: nobody gets it, the poster gets a bounce.
    t2 = uniq("reject-")
    qid2 = srv.send(from_addr, [list_addr], simple_message(t2, subject="Second", sender=from_addr, to=list_addr))
    h2 = wait_until(lambda: held(t2), 30, f"{t2} in the moderation queue", interval=0.2)
    status, _, r = web.api("POST", f"/lists/{name}/moderation/{h2['token']}/maybe", auth=boss)
    assert status == 404, r
    assert held(t2), "a refused decision leaves the post held"
    status, _, r = web.api("POST", f"/lists/{name}/moderation/{h2['token']}/reject", auth=boss)
    assert status == 200 and r["approved"] is False and r["queue_id"] == qid2, r
    bounce = srv.wait_token(poster, t2.encode())
    assert email.message_from_bytes(bounce).get_content_type() == "multipart/report"
    assert b"5.7.1" in bounce, "the rejection carries 5.7.1"
    wait_gone(web, boss, qid2)
    for m in (m1, m2):
        assert not with_token(srv, m, t2), f"{m} got a rejected post"
    assert held(t2) is None
    status, _, q = web.api("GET", f"/lists/{name}/moderation", auth=boss)
    assert q == [], q


# --------------------------------------------------------------------------
# log viewer


def test_log_viewer_filters(admin_server, web, boss):
    srv = admin_server
    u1, _ = srv.add_user(uniq("logone"))
    u2, _ = srv.add_user(uniq("logtwo"))
    s1, s2 = f"{uniq('ls')}@{DOMAIN}", f"{uniq('ls')}@{DOMAIN}"
    t1, t2 = uniq("logtok-"), uniq("logtok-")
    start = int(time.time()) - 1
    q1 = srv.send(s1, [f"{u1}@{DOMAIN}"], simple_message(t1, sender=s1, to=f"{u1}@{DOMAIN}"))
    q2 = srv.send(s2, [f"{u2}@{DOMAIN}"], simple_message(t2, sender=s2, to=f"{u2}@{DOMAIN}"))
    srv.wait_token(u1, t1.encode())
    srv.wait_token(u2, t2.encode())

    def logs(**params) -> list[dict]:
        from urllib.parse import urlencode

        status, _, body = web.api("GET", "/logs?" + urlencode(params), auth=boss)
        assert status == 200, (params, body)
        return body

    def qid_of(e: dict) -> str | None:
        return dict((k, v) for k, v in e["fields"]).get("queue_id")

    # Both messages' delivery lines are in (lines reach the files in batches).
    for q in (q1, q2):
        wait_until(lambda: any(e["log"] == "delivery" for e in logs(queue_id=q)), 15, f"delivery events of {q}")
    end = int(time.time()) + 1

    by_id = logs(queue_id=q1)
    assert by_id and {e["log"] for e in by_id} >= {"receiver", "delivery"}, by_id
    assert all(qid_of(e) == q1 for e in by_id), [e["raw"] for e in by_id if qid_of(e) != q1]
    delivery_only = logs(queue_id=q1, log="delivery")
    assert delivery_only and all(e["log"] == "delivery" and qid_of(e) == q1 for e in delivery_only)
    assert len(delivery_only) < len(by_id)

    addr = f"{u2}@{DOMAIN}"
    by_addr = logs(address=addr.upper())
    assert by_addr and any(qid_of(e) == q2 for e in by_addr), by_addr
    assert all(addr in e["raw"].lower() for e in by_addr), [e["raw"] for e in by_addr]
    assert not any(qid_of(e) == q1 for e in by_addr)

    by_text = logs(text=t1.upper())  # the Message-ID carries the token
    assert by_text and all(t1 in e["raw"].lower() for e in by_text), [e["raw"] for e in by_text]
    assert {qid_of(e) for e in by_text} == {q1}

    window = logs(since=start, until=end)
    assert {q1, q2} <= {qid_of(e) for e in window}
    assert all(start <= e["unix"] <= end for e in window), [e["time"] for e in window]
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    assert {q1, q2} <= {qid_of(e) for e in logs(since=iso(start), until=iso(end), queue_id=q1) + logs(since=iso(start), queue_id=q2)}
    before = logs(until=start - 3600, queue_id=q1)
    assert before == [], before
    assert logs(since=end + 3600) == []
    minute = datetime.fromtimestamp(start - 120, timezone.utc).strftime("%Y-%m-%d %H:%M")
    assert any(qid_of(e) == q2 for e in logs(since=minute, address=addr))

    newest = logs(limit=1)
    assert len(newest) == 1

    for params, field in [({"since": "yesterday"}, "since"), ({"until": "2030-13-01"}, "until"),
                          ({"log": "mail"}, "log"), ({"limit": "many"}, "limit")]:
        from urllib.parse import urlencode

        status, _, body = web.api("GET", "/logs?" + urlencode(params), auth=boss)
        assert status == 400 and body["field"] == field and field in body["error"], (params, status, body)


# --------------------------------------------------------------------------
# TLS


SHORT_NAMES = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
    "stateOrProvinceName": "ST", "localityName": "L", "emailAddress": "emailAddress",
}


def name_of(rdns) -> str:
    """An ssl getpeercert() name as `CN=a, O=b` (the API's form)."""
    return ", ".join(" + ".join(f"{SHORT_NAMES.get(k, k)}={v}" for k, v in rdn) for rdn in rdns)


def fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def assert_same_certificate(api_cert: dict, peer: dict, der: bytes) -> None:
    assert api_cert["subject"] == name_of(peer["subject"]), (api_cert, peer)
    assert api_cert["issuer"] == name_of(peer["issuer"]), (api_cert, peer)
    assert api_cert["not_after"] == ssl.cert_time_to_seconds(peer["notAfter"]), (api_cert, peer)
    assert api_cert["not_before"] == ssl.cert_time_to_seconds(peer["notBefore"]), (api_cert, peer)
    assert api_cert["fingerprint"] == fingerprint(der)
    assert 0 < api_cert["expires_in"] <= api_cert["not_after"] - int(time.time()) + 5, api_cert


def test_tls_route_shows_the_self_signed_certificate_the_listeners_serve(admin_server, web, boss):
    """Without [tls] the admin listener is plain HTTP on loopback, but the
    mail services serve the self-signed certificate: the TLS route shows it."""
    srv = admin_server
    with srv.smtp_starttls() as s:  # verified against the self-signed certificate for HOSTNAME
        peer, der = s.sock.getpeercert(), s.sock.getpeercert(binary_form=True)
    status, _, certs = web.api("GET", "/tls", auth=boss)
    assert status == 200 and len(certs) == 1, certs
    c = certs[0]
    assert_same_certificate(c, peer, der)
    assert f"CN={HOSTNAME}" in c["subject"] and c["self_signed"] is True, c
    assert c["file"] and c["file"].endswith("selfsigned-cert.pem"), c
    status, _, page = web.request("GET", "/tls", headers={"Cookie": _login_cookie(web, boss)})
    assert status == 200 and c["fingerprint"].encode() in page


def _login_cookie(web: Http, who) -> str:
    from test_admin import Browser

    return Browser(web, *who).cookie


@pytest.fixture(scope="module")
def tls_server(postamt_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("postamt-tls")
    cert, key = make_cert(root / "certs", "configured", days=30)
    srv = Postamt(postamt_bin, root, {
        "listen": {"admin": ["127.0.0.1:0"], "smtp": ["127.0.0.1:0"], "pop3s": ["127.0.0.1:0"]},
        "tls": {"cert": str(cert), "key": str(key)},
    })
    srv.start()
    try:
        yield srv
        srv.stop()
    finally:
        srv.kill9()


def test_tls_route_shows_the_configured_certificate(tls_server):
    srv = tls_server
    who = srv.add_user(uniq("tlsboss"), admin=True)
    ctx = ssl.create_default_context(cafile=str(srv.cafile))
    host, port = srv.addr("admin")
    with socket.create_connection((host, port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOSTNAME) as t:
            peer, der = t.getpeercert(), t.getpeercert(binary_form=True)
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.sock = t
            import base64

            auth = base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()
            conn.request("GET", "/api/v1/tls", headers={"Host": f"{HOSTNAME}:{port}", "Authorization": "Basic " + auth})
            r = conn.getresponse()
            status, certs = r.status, json.loads(r.read())
    assert status == 200 and len(certs) == 1, certs
    c = certs[0]
    assert_same_certificate(c, peer, der)
    assert c["subject"] == f"CN={HOSTNAME}" and c["file"] == str(srv.config["tls"]["cert"]), c
    # The mail listeners serve the same certificate.
    with srv.smtp_starttls() as s:
        assert s.sock.getpeercert(binary_form=True) == der


# --------------------------------------------------------------------------
# every write route: 400 naming the field, nothing half-applied


@pytest.fixture(scope="module")
def victim(admin_server, web, boss):
    """A user with an auto-reply and a forward, an alias and a list with a
    member and options: the state bad requests must leave alone."""
    name, pw = admin_server.add_user(uniq("vic"), "Vic-pass-1")
    for method, path, body in [
        ("PUT", f"/users/{name}/autoreply", {"subject": "Away", "body": "Back soon.", "until": "2099-12-31"}),
        ("PUT", f"/users/{name}/forward", {"addresses": [f"vic@{REMOTE}"], "keep_copy": True}),
        ("POST", "/aliases", {"pattern": f"{name}-alias", "targets": [name]}),
    ]:
        status, _, r = web.api(method, path, auth=boss, body=body)
        assert status in (200, 201), (path, r)
    lst = uniq("vlist")
    status, _, r = web.api("POST", "/lists", auth=boss,
                           body={"name": lst, "posting": "anyone", "subject_prefix": "[v]", "max_message_size": 100000})
    assert status == 201, r
    status, _, r = web.api("POST", f"/lists/{lst}/members", auth=boss, body={"address": name})
    assert status == 201, r
    return name, pw, lst


def snapshot(srv: Postamt, web: Http, boss, victim) -> dict:
    name, _, lst = victim
    out = {}
    for path in ["/users", "/aliases", "/lists", f"/users/{name}", f"/lists/{lst}", f"/lists/{lst}/members",
                 "/settings", "/queue"]:
        status, _, body = web.api("GET", path, auth=boss)
        assert status == 200, (path, body)
        out[path] = body
    status, _, body = web.api("GET", "/me", auth=victim[:2])
    assert status == 200, "the victim's password still works"
    out["config"] = srv.config_path.read_bytes()
    dkim = srv.data_dir / "dkim"
    out["dkim"] = sorted(p.name for p in dkim.iterdir()) if dkim.is_dir() else []
    return out


def bad_requests(boss_name: str, victim) -> list[tuple[str, str, object, str, str]]:
    """(who, method, path, body, field): `who` is "boss" or "victim"."""
    name, pw, lst = victim
    new = uniq("nobody")
    ok_ar = {"subject": "s", "body": "b"}
    return [
        # users
        ("boss", "POST", "/users", {"name": new}, "password"),
        ("boss", "POST", "/users", {"password": "Pw-12345"}, "name"),
        ("boss", "POST", "/users", {"name": "no good", "password": "Pw-12345"}, "name"),
        ("boss", "POST", "/users", {"name": new, "password": "Pw-12345", "admin": "yes"}, "admin"),
        ("boss", "POST", "/users", {"name": new, "password": ""}, "password"),
        ("boss", "POST", "/users", {"name": new, "password": "a\x01b"}, "password"),
        ("boss", "POST", "/users", {"name": new, "password": "Pw-12345", "colour": "red"}, "colour"),
        ("boss", "DELETE", f"/users/{boss_name}", None, "name"),
        ("boss", "PUT", f"/users/{name}/password", {}, "password"),
        ("boss", "PUT", f"/users/{name}/password", {"password": ""}, "password"),
        ("boss", "PUT", f"/users/{name}/password", {"password": 12345}, "password"),
        ("boss", "PUT", f"/users/{name}/admin", {"admin": "yes"}, "admin"),
        ("boss", "PUT", f"/users/{boss_name}/admin", {"admin": False}, "admin"),
        # auto-reply
        ("boss", "PUT", f"/users/{name}/autoreply", {"subject": "a\r\nBcc: x@evil.example", "body": "b"}, "subject"),
        ("boss", "PUT", f"/users/{name}/autoreply", {"subject": "", "body": "b"}, "subject"),
        ("boss", "PUT", f"/users/{name}/autoreply", {"subject": "s"}, "body"),
        ("boss", "PUT", f"/users/{name}/autoreply", {**ok_ar, "from": "tomorrow"}, "from"),
        ("boss", "PUT", f"/users/{name}/autoreply", {**ok_ar, "until": "2030-02-30"}, "until"),
        ("boss", "PUT", f"/users/{name}/autoreply", {**ok_ar, "from": "2030-02-01", "until": "2030-01-01"}, "until"),
        # forward
        ("boss", "PUT", f"/users/{name}/forward", {"addresses": []}, "addresses"),
        ("boss", "PUT", f"/users/{name}/forward", {"addresses": ["not an address"]}, "addresses"),
        ("boss", "PUT", f"/users/{name}/forward", {"addresses": f"x@{REMOTE}"}, "addresses"),
        ("boss", "PUT", f"/users/{name}/forward", {"addresses": [f"x@{REMOTE}"], "keep_copy": "yes"}, "keep_copy"),
        # aliases
        ("boss", "POST", "/aliases", {"pattern": "bad pattern!", "targets": [name]}, "pattern"),
        ("boss", "POST", "/aliases", {"pattern": f"{new}-a", "targets": []}, "targets"),
        ("boss", "POST", "/aliases", {"pattern": f"{new}-a", "targets": ["two words"]}, "targets"),
        ("boss", "POST", "/aliases", {"pattern": f"{new}-a"}, "targets"),
        # lists
        ("boss", "POST", "/lists", {"name": "bad name!"}, "name"),
        ("boss", "POST", "/lists", {"name": new, "posting": "everybody"}, "posting"),
        ("boss", "POST", "/lists", {"name": new, "reply_to": "nobody"}, "reply_to"),
        ("boss", "POST", "/lists", {"name": new, "subject_prefix": "[x]\nBcc: a@b.example"}, "subject_prefix"),
        ("boss", "POST", "/lists", {"name": new, "max_message_size": "big"}, "max_message_size"),
        # (a remote owner is fine; a local address that is nobody is not)
        ("boss", "POST", "/lists", {"name": new, "owner": f"ghost-{new}@{DOMAIN}"}, "owner"),
        # list PATCH: one good and one bad value applies neither
        ("boss", "PATCH", f"/lists/{lst}", {"posting": "members", "subject_prefix": "a\rb"}, "subject_prefix"),
        ("boss", "PATCH", f"/lists/{lst}", {"posting": "everybody"}, "posting"),
        ("boss", "PATCH", f"/lists/{lst}", {"reply_to": "nobody"}, "reply_to"),
        ("boss", "PATCH", f"/lists/{lst}", {"max_message_size": -1}, "max_message_size"),
        ("boss", "PATCH", f"/lists/{lst}", {"posting": "members", "owner": f"ghost-{new}@{DOMAIN}"}, "owner"),
        ("boss", "PATCH", f"/lists/{lst}", {"colour": "red"}, "colour"),
        # members
        ("boss", "POST", f"/lists/{lst}/members", {"address": "not an address"}, "address"),
        ("boss", "POST", f"/lists/{lst}/members", {}, "address"),
        # settings: one good and one bad value applies neither
        ("boss", "PUT", "/settings", {"hostname": "bad host!"}, "hostname"),
        ("boss", "PUT", "/settings", {"domains": ["ok.example", "bad domain"]}, "domains"),
        ("boss", "PUT", "/settings", {"postmaster": "nobody"}, "postmaster"),
        ("boss", "PUT", "/settings", {"mailbox_template": "/srv/mail"}, "mailbox_template"),
        ("boss", "PUT", "/settings", {"log_level": "loud"}, "log_level"),
        ("boss", "PUT", "/settings", {"smarthost": "relay.example:notaport"}, "smarthost"),
        ("boss", "PUT", "/settings", {"smarthost": "relay.example:25", "log_level": "loud"}, "log_level"),
        ("boss", "PUT", "/settings", {"hostname": "mx\r\nevil.example"}, "hostname"),
        ("boss", "PUT", "/settings", {"create_mailboxes": "maybe"}, "create_mailboxes"),
        ("boss", "PUT", "/settings", {"nope": 1}, "nope"),
        # queue actions
        ("boss", "POST", "/queue/not-a-queue-id/hold", None, "id"),
        ("boss", "POST", "/queue/not-a-queue-id/release", None, "id"),
        ("boss", "POST", "/queue/not-a-queue-id/bounce", None, "id"),
        ("boss", "DELETE", "/queue/not-a-queue-id", None, "id"),
        # DKIM
        ("boss", "POST", "/dkim/elsewhere.example", None, "domain"),
        ("boss", "POST", f"/dkim/{DOMAIN}?force=maybe", None, "force"),
        ("boss", "POST", f"/dkim/{DOMAIN}?forse=true", None, "forse"),
        # self-service
        ("victim", "PUT", "/me/password", {"old": pw, "new": ""}, "new"),
        ("victim", "PUT", "/me/password", {"old": pw}, "new"),
        ("victim", "PUT", "/me/autoreply", {"subject": "a\nb", "body": "x"}, "subject"),
        ("victim", "PUT", "/me/autoreply", {"subject": "s", "body": "b", "until": "soon"}, "until"),
        ("victim", "PUT", "/me/forward", {"addresses": []}, "addresses"),
        ("victim", "PUT", "/me/forward", {"addresses": ["not an address"]}, "addresses"),
        # last: a wrong current password counts as a failed login
        ("victim", "PUT", "/me/password", {"old": "wrong-" + pw, "new": "New-pass-1"}, "old"),
    ]


def test_every_write_route_refuses_bad_input_naming_the_field_and_changes_nothing(admin_server, web, boss, victim):
    srv = admin_server
    before = snapshot(srv, web, boss, victim)
    failures = []
    for who, method, path, body, field in bad_requests(boss[0], victim):
        auth = boss if who == "boss" else victim[:2]
        status, _, r = web.api(method, path, auth=auth, body=body)
        after = snapshot(srv, web, boss, victim)
        changed = [k for k in before if before[k] != after[k]]
        before = after
        if not (status == 400 and isinstance(r, dict) and r.get("field") == field and field in r.get("error", "")):
            failures.append(f"{method} {path} {body!r}: want 400 naming `{field}`, got {status} {r}")
        elif changed:
            failures.append(f"{method} {path} {body!r}: refused but changed {changed}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------
# /metrics


def metrics(web: Http) -> dict:
    """Every sample of /metrics read by prometheus_client's parser:
    {(sample name, frozenset(labels)): value}, plus the families' types."""
    from prometheus_client.parser import text_string_to_metric_families

    status, hdrs, body = web.request("GET", "/metrics")
    assert status == 200 and hdrs["content-type"].startswith("text/plain"), hdrs
    samples, types = {}, {}
    for fam in text_string_to_metric_families(body.decode()):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"series repeated: {key}"
            samples[key] = s.value
    return {"samples": samples, "types": types}


def value(m: dict, name: str, **labels) -> float:
    key = (name, frozenset(labels.items()))
    assert key in m["samples"], f"no series {name}{labels} in /metrics"
    return m["samples"][key]


def total(m: dict, name: str) -> float:
    return sum(v for (n, _), v in m["samples"].items() if n == name)


PROTOCOLS = ["smtp", "submission", "pop3", "imap", "admin"]
BOUNCE_CLASSES = ["address", "mailbox", "system", "network", "protocol", "content", "policy", "expired", "other"]


def test_metrics_after_real_traffic(admin_server, web, boss):
    srv = admin_server
    m0 = metrics(web)
    # The families the issue names, each with its type.
    for fam, kind in [
        ("postamt_messages_received", "counter"), ("postamt_deliveries", "counter"), ("postamt_bounces", "counter"),
        ("postamt_queue_messages", "gauge"), ("postamt_queue_oldest_seconds", "gauge"),
        ("postamt_sessions_active", "gauge"), ("postamt_sessions", "counter"),
        ("postamt_login_failures", "counter"), ("postamt_tls_handshakes", "counter"),
        ("postamt_bytes_received", "counter"), ("postamt_bytes_sent", "counter"),
    ]:
        assert m0["types"].get(fam) == kind, (fam, m0["types"].get(fam), sorted(m0["types"]))

    # Traffic: a local delivery over STARTTLS, a POP3 login failure, a
    # POP3 retrieval, a message deferred (no DNS), then bounced for good.
    rcpt, rpw = srv.add_user(uniq("metric"))
    sender, _ = srv.add_user(uniq("msender"))
    token = uniq("metrics-")
    data = simple_message(token, body=(b"x" * 70 + b"\r\n") * 80, sender=f"{sender}@{DOMAIN}", to=f"{rcpt}@{DOMAIN}")
    with srv.smtp_starttls() as s:
        code, _ = s.mail(f"{sender}@{DOMAIN}")
        assert code == 250
        assert s.rcpt(f"{rcpt}@{DOMAIN}")[0] == 250
        assert s.data(data)[0] == 250
    srv.wait_token(rcpt, token.encode())
    bad = srv.raw_pop3()
    bad.send(f"USER {rcpt}\r\n".encode())
    assert bad.read_line().startswith(b"+OK")
    bad.send(b"PASS wrong-password\r\n")
    assert bad.read_line().startswith(b"-ERR")
    bad.close()
    p = srv.pop3(rcpt, rpw)
    try:
        retrieved = b"\r\n".join(p.retr(1)[1])
        assert token.encode() in retrieved
    finally:
        p.quit()

    alias = uniq("mfar")
    srv.add_alias(alias, f"nobody@{REMOTE}")
    qid = srv.send(f"{sender}@{DOMAIN}", [f"{alias}@{DOMAIN}"], simple_message(uniq("deferred-"), sender=f"{sender}@{DOMAIN}"))
    entry = wait_deferred(web, boss, qid)

    # Queue gauges agree with the queue.
    def queue_agrees():
        t0 = time.time()
        m = metrics(web)
        t1 = time.time()
        status, _, q = web.api("GET", "/queue", auth=boss)
        if value(m, "postamt_queue_messages") != len(q):
            return None
        return m, q, t0, t1

    m1, q, t0, t1 = wait_until(queue_agrees, 15, "/metrics queue length equal to GET /queue")
    assert len(q) >= 1
    # The oldest age is the age of the oldest queued message when /metrics
    # was rendered (whole seconds).
    oldest = value(m1, "postamt_queue_oldest_seconds")
    first = min(e["created_at"] for e in q)
    assert int(t0) - first - 1 <= oldest <= int(t1) - first + 1, (oldest, t0 - first, t1 - first)

    # The alias goes away: the next attempt bounces (unknown address).
    status, _, _ = web.api("DELETE", f"/aliases/{alias}", auth=boss)
    assert status == 200
    status, _, _ = web.api("POST", "/queue/flush", auth=boss)
    assert status == 200
    wait_gone(web, boss, qid)
    srv.wait_messages(sender, 1)

    # The delivery agent counts a delivery after its file is in the
    # Maildir: wait until the bounce's local delivery is counted too.
    def counted():
        m = metrics(web)
        done = value(m, "postamt_deliveries_total", result="delivered", destination="local") - value(
            m0, "postamt_deliveries_total", result="delivered", destination="local"
        )
        return m if done >= 2 else None

    m2 = wait_until(counted, 15, "the message and the bounce counted as local deliveries")

    def delta(name, **labels):
        return value(m2, name, **labels) - value(m0, name, **labels)

    assert delta("postamt_messages_received_total", protocol="smtp") >= 2
    assert delta("postamt_deliveries_total", result="delivered", destination="local") >= 2  # message + bounce
    assert delta("postamt_deliveries_total", result="deferred") >= 1
    bounced = delta("postamt_deliveries_total", result="bounced")
    by_class = {c: delta("postamt_bounces_total", **{"class": c}) for c in BOUNCE_CLASSES}
    assert bounced >= 1 and sum(by_class.values()) == bounced, (bounced, by_class)
    assert by_class["address"] >= 1, f"an unknown address is an address-class bounce: {by_class}"
    assert sum(v for (n, _), v in m2["samples"].items() if n == "postamt_bounces_total") == value(
        m2, "postamt_deliveries_total", result="bounced"
    )
    assert delta("postamt_sessions_total", protocol="smtp") >= 2
    assert delta("postamt_sessions_total", protocol="pop3") >= 2
    assert delta("postamt_login_failures_total", protocol="pop3") == 1
    assert delta("postamt_tls_handshakes_total", protocol="smtp", result="ok") >= 1
    assert delta("postamt_bytes_received_total") >= len(data)
    assert delta("postamt_bytes_sent_total", protocol="pop3") >= len(data)
    for p_ in PROTOCOLS:
        assert value(m2, "postamt_sessions_active", protocol=p_) >= 0
        assert value(m2, "postamt_tls_handshakes_total", protocol=p_, result="failed") >= 0
    # Counters never go down.
    for key, v in m0["samples"].items():
        name = key[0]
        if name.endswith("_total"):
            assert m2["samples"][key] >= v, key


# --------------------------------------------------------------------------
# [admin] allow_plaintext_http


def test_plain_http_off_loopback_needs_the_explicit_opt_in(postamt_bin, tmp_path):
    """A non-loopback admin address without [tls] is refused, naming the
    key and the opt-in; `[admin] allow_plaintext_http = true` accepts it;
    the key is type-checked. (Tests bind only loopback: the listener's own
    decision is unit-tested in crates/admin/src/server.rs.)"""

    def check(overrides: dict) -> subprocess.CompletedProcess:
        srv = Postamt(postamt_bin, tmp_path / uniq("cfg"), overrides)
        return subprocess.run([str(postamt_bin), "--config", str(srv.config_path), "check-config"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    listen = {"listen": {"admin": ["192.0.2.10:8080"], "smtp": ["127.0.0.1:0"]}}
    refused = check(listen)
    assert refused.returncode != 0, refused.stdout
    assert "key `listen.admin[0]`" in refused.stderr and "allow_plaintext_http" in refused.stderr, refused.stderr
    refused = check({**listen, "admin": {"allow_plaintext_http": False}})
    assert refused.returncode != 0 and "key `listen.admin[0]`" in refused.stderr, refused.stderr
    accepted = check({**listen, "admin": {"allow_plaintext_http": True}})
    assert accepted.returncode == 0, accepted.stderr
    wrong = check({"admin": {"allow_plaintext_http": "yes"}})
    assert wrong.returncode != 0 and "key `admin.allow_plaintext_http`" in wrong.stderr, wrong.stderr
    # On loopback nothing changes: served, with or without the key.
    loopback = check({"listen": {"admin": ["127.0.0.1:0", "[::1]:0"]}})
    assert loopback.returncode == 0, loopback.stderr


def test_opted_in_server_serves_plain_http(postamt_factory):
    """With the opt-in the server starts and answers plain HTTP (here on
    loopback, the only address tests may bind)."""
    srv = postamt_factory({"listen": ADMIN_LISTEN, "admin": {"allow_plaintext_http": True}})
    status, _, body = Http(srv.addr("admin")).request("GET", "/login")
    assert status == 200 and b'name="password"' in body
