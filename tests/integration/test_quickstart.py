"""`postamt quickstart --no-serve`: writes a config that `check-config`
accepts, creates a demo user and prints a password that really logs in."""

from __future__ import annotations

import re
import tomllib

import pytest

from support import Postamt, run_postamt


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

    # The printed password logs in (on loopback ephemeral ports instead of
    # the configured ones).
    candidates = password_candidates(out)
    assert candidates, f"no password printed:\n{out}"
    srv = Postamt.from_config_file(postamt_bin, tmp_path, cfg)
    listen = config.get("listen", {})
    assert listen.get("pop3") or listen.get("pop3s"), f"quickstart enables no POP3 service: {listen}"
    srv.config["listen"] = {"smtp": ["127.0.0.1:0"], "pop3": ["127.0.0.1:0"]}
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
        srv.stop()
    finally:
        srv.kill9()
