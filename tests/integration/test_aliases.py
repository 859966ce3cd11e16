"""Aliases end to end: exact, `*` wildcards, several targets, chains, a
catch-all, and removal; mail must reach the resolved users' Maildirs."""

from __future__ import annotations

from support import DOMAIN, simple_message, uniq


def rcpt_code(server, address: str) -> tuple[int, bytes]:
    with server.smtp() as s:
        assert s.mail(f"sender@{DOMAIN}")[0] == 250
        return s.rcpt(address)


def deliver(server, address: str, token: str) -> str:
    return server.send(f"sender@{DOMAIN}", [address], simple_message(token, to=address))


def test_exact_alias_local_part(server):
    user, _ = server.add_user(uniq("rusdoil"))
    alias = uniq("carsten.doil")
    server.add_alias(alias, user)
    token = uniq("exact-")
    deliver(server, f"{alias}@{DOMAIN}", token)
    server.wait_token(user, token.encode())


def test_exact_alias_full_address(server):
    user, _ = server.add_user()
    alias = uniq("info")
    server.add_alias(f"{alias}@{DOMAIN}", user)
    token = uniq("full-")
    deliver(server, f"{alias}@{DOMAIN}", token)
    server.wait_token(user, token.encode())


def test_wildcard_alias(server):
    bob, _ = server.add_user(uniq("bob"))
    prefix = uniq("sales")
    server.add_alias(f"{prefix}-*", bob)
    tokens = [uniq("wild-"), uniq("wild-")]
    deliver(server, f"{prefix}-emea@{DOMAIN}", tokens[0])
    deliver(server, f"{prefix}-north.america@{DOMAIN}", tokens[1])
    for t in tokens:
        server.wait_token(bob, t.encode())
    # The wildcard does not match what does not start with the prefix.
    code, resp = rcpt_code(server, f"x{prefix}-emea@{DOMAIN}")
    assert code == 550, (code, resp)
    code, resp = rcpt_code(server, f"{prefix}emea@{DOMAIN}")
    assert code == 550, (code, resp)


def test_alias_to_several_targets(server):
    ann, _ = server.add_user(uniq("ann"))
    ben, _ = server.add_user(uniq("ben"))
    team = uniq("team")
    server.add_alias(team, ann, f"{ben}@{DOMAIN}")
    token = uniq("team-")
    deliver(server, f"{team}@{DOMAIN}", token)
    server.wait_token(ann, token.encode())
    server.wait_token(ben, token.encode())
    # Exactly one copy each (checked after a later sentinel has arrived).
    sentinel = uniq("sentinel-")
    server.send(f"sender@{DOMAIN}", [f"{ann}@{DOMAIN}", f"{ben}@{DOMAIN}"], simple_message(sentinel))
    for u in (ann, ben):
        server.wait_token(u, sentinel.encode())
        copies = [m for m in server.messages(u) if token.encode() in m]
        assert len(copies) == 1, f"{u} got {len(copies)} copies of the team message"


def test_alias_chain(server):
    user, _ = server.add_user()
    a, b = uniq("chaina"), uniq("chainb")
    server.add_alias(a, b)
    server.add_alias(b, user)
    token = uniq("chain-")
    deliver(server, f"{a}@{DOMAIN}", token)
    server.wait_token(user, token.encode())


def test_alias_list_and_delete(server):
    user, _ = server.add_user()
    alias = uniq("gone")
    server.add_alias(alias, user)
    listing = server.cli("alias", "list").stdout
    line = next((l for l in listing.splitlines() if alias in l), None)
    assert line is not None and user in line, f"`alias list` should show {alias} -> {user}:\n{listing}"
    assert rcpt_code(server, f"{alias}@{DOMAIN}")[0] == 250
    server.cli("alias", "del", alias)
    assert alias not in server.cli("alias", "list").stdout
    code, resp = rcpt_code(server, f"{alias}@{DOMAIN}")
    assert code == 550 and resp.startswith(b"5.1.1"), (code, resp)


def test_catch_all(postamt_factory):
    """`*@example.org -> catchall` (own server: it changes every unknown
    address). Real users keep their own mail."""
    srv = postamt_factory()
    catchall, _ = srv.add_user("catchall")
    real, _ = srv.add_user(uniq("real"))
    srv.add_alias(f"*@{DOMAIN}", catchall)
    t_unknown, t_real = uniq("unknown-"), uniq("real-")
    deliver(srv, f"{uniq('whoever')}@{DOMAIN}", t_unknown)
    deliver(srv, f"{real}@{DOMAIN}", t_real)
    srv.wait_token(catchall, t_unknown.encode())
    srv.wait_token(real, t_real.encode())
    assert not [m for m in srv.messages(catchall) if t_real.encode() in m], (
        "mail for an existing user went to the catch-all"
    )
    # Other domains are still not relayed.
    code, resp = rcpt_code(srv, "someone@elsewhere.test")
    assert code == 554 and resp.startswith(b"5.7.1"), (code, resp)
