"""`postamt install --dry-run` and `postamt uninstall --dry-run` (issue 8):
the steps printed (account, data dir, config, unit, systemctl), the unit's
hardening, the unit checked by `systemd-analyze verify` when it is there,
uninstall never touching the data, a real run refused without root.

Nothing here installs for real (CI runs as root but without a running
systemd): every run is a dry run, or a refusal, in temporary directories.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from support import run_postamt

HARDENING = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "Restart=on-failure",
]
# The unit hides these from the service; a binary there cannot be its ExecStart.
HIDDEN = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")


def file_shown(out: str, path: Path | str) -> str:
    """The content the dry run prints between `----- begin PATH` and `----- end PATH`."""
    m = re.search(rf"^----- begin {re.escape(str(path))}\n(.*?)^----- end {re.escape(str(path))}$", out, re.S | re.M)
    assert m, f"the dry run does not show the content of {path}:\n{out}"
    return m.group(1)


def unit_lines(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]


def exec_binary(postamt_bin: Path) -> Path:
    """A binary a unit may name: the one under test, unless it lives where
    the unit hides it from the service (then any system executable)."""
    real = postamt_bin.resolve()
    if not str(real).startswith(HIDDEN):
        return real
    return Path(shutil.which("true") or "/bin/true")


@pytest.fixture
def layout(tmp_path, postamt_bin):
    """Paths of a dry run kept inside tmp_path."""
    units = tmp_path / "units"
    units.mkdir()
    return {
        "config": tmp_path / "etc" / "postamt.toml",
        "data": tmp_path / "data",
        "units": units,
        "unit": units / "postamt.service",
        "binary": exec_binary(postamt_bin),
    }


def dry_install(postamt_bin, layout, *extra: str) -> str:
    res = run_postamt(
        postamt_bin,
        ["--config", str(layout["config"]), "install", "--dry-run", "--data-dir", str(layout["data"]),
         "--unit-dir", str(layout["units"]), "--binary", str(layout["binary"]), *extra],
    )
    return res.stdout


def test_install_dry_run_shows_every_step_and_changes_nothing(postamt_bin, layout):
    out = dry_install(postamt_bin, layout)
    assert out.startswith("postamt install --dry-run: nothing is changed"), out
    # The account: a system account with no login shell.
    create = [line for line in out.splitlines() if "create the system account `postamt`" in line]
    assert create, out
    assert "--system" in create[0] and "nologin" in create[0], create[0]
    # The data dir, the service's own, 0750.
    assert f"create directory {layout['data']} (owner postamt:postamt, mode 0750)" in out, out
    # The config: quickstart's, on the standard ports, with our data dir.
    cfg = tomllib.loads(file_shown(out, layout["config"]))
    assert cfg["data_dir"] == str(layout["data"])
    assert cfg["listen"]["smtp"] == ["127.0.0.1:25"] and cfg["listen"]["submission"] == ["127.0.0.1:587"]
    assert cfg["listen"]["pop3s"] == ["127.0.0.1:995"] and cfg["listen"]["imaps"] == ["127.0.0.1:993"]
    # The unit, hardened, with our paths.
    assert f"write {layout['unit']} (owner root:root, mode 0644)" in out, out
    unit = file_shown(out, layout["unit"])
    for line in HARDENING:
        assert line in unit.splitlines(), f"{line} missing from the unit:\n{unit}"
    assert unit_lines(unit, "User") == ["postamt"] and unit_lines(unit, "Group") == ["postamt"]
    assert unit_lines(unit, "ExecStart") == [f"{layout['binary']} serve --config {layout['config']}"]
    assert str(layout["data"]) in unit_lines(unit, "ReadWritePaths"), unit
    caps = [line for line in unit.splitlines() if "CAP_" in line and not line.startswith("#")]
    assert caps and all(line.endswith("=CAP_NET_BIND_SERVICE") for line in caps), caps
    # systemd: reload, then enable and start.
    steps = [line for line in out.splitlines() if line.startswith("[")]
    assert any(line.endswith("run: systemctl daemon-reload") for line in steps), steps
    assert steps[-1].endswith("run: systemctl enable --now postamt.service"), steps
    # Nothing was made.
    assert not layout["data"].exists() and not layout["config"].exists()
    assert list(layout["units"].iterdir()) == []


def test_install_dry_run_with_the_defaults(postamt_bin):
    """No options: the standard places (nothing is written, so this is safe
    anywhere)."""
    res = run_postamt(postamt_bin, ["--config", "/etc/postamt/postamt.toml", "install", "--dry-run"])
    out = res.stdout
    assert "/etc/systemd/system/postamt.service" in out, out
    if not Path("/etc/postamt/postamt.toml").exists():
        unit = file_shown(out, "/etc/systemd/system/postamt.service")
        assert "StateDirectory=postamt" in unit.splitlines()
        assert "ReadWritePaths=/var/lib/postamt" in unit.splitlines()
        assert "ReadWritePaths=/etc/postamt" in unit.splitlines()


def test_no_enable_leaves_systemctl_enable_out(postamt_bin, layout):
    out = dry_install(postamt_bin, layout, "--no-enable")
    assert "enable --now" not in "\n".join(l for l in out.splitlines() if l.startswith("[")), out


def test_unit_passes_systemd_analyze_verify(postamt_bin, layout, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    unit = file_shown(dry_install(postamt_bin, layout), layout["unit"])
    check = tmp_path / "verify" / "postamt.service"
    check.parent.mkdir()
    check.write_text(unit)
    res = subprocess.run([analyze, "verify", str(check)], capture_output=True, text=True, timeout=60)
    # A bad value is only a warning for systemd (exit 0): any line about our unit fails the test.
    about_unit = [line for line in (res.stdout + res.stderr).splitlines() if "postamt.service" in line]
    assert res.returncode == 0 and not about_unit, f"systemd-analyze verify:\n{res.stdout}{res.stderr}\n{unit}"


def test_uninstall_dry_run_keeps_the_data(postamt_bin, layout):
    layout["unit"].write_text(file_shown(dry_install(postamt_bin, layout), layout["unit"]))
    res = run_postamt(
        postamt_bin,
        ["--config", str(layout["config"]), "uninstall", "--dry-run", "--data-dir", str(layout["data"]),
         "--unit-dir", str(layout["units"])],
    )
    out = res.stdout
    assert "systemctl disable --now postamt.service" in out, out
    assert f"remove {layout['unit']}" in out, out
    assert "systemctl daemon-reload" in out, out
    # The data dir and the config are named as kept, never as removed.
    for line in out.splitlines():
        if str(layout["data"]) in line or str(layout["config"]) in line:
            assert not re.search(r"\b(rm|remove|delete|deleting|erase|purge)\b", line, re.I), line
            assert "Kept" in line, line
    assert f"the data directory {layout['data']}" in out, out
    assert layout["unit"].exists(), "a dry run removes nothing"


def test_a_real_run_needs_root(postamt_bin, layout):
    args = [str(postamt_bin), "--config", str(layout["config"]), "install", "--data-dir", str(layout["data"]),
            "--unit-dir", str(layout["units"])]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or shutil.which("setpriv")
        if not runuser:
            pytest.skip("running as root without runuser/setpriv to drop privileges")
        if os.path.basename(runuser) == "runuser":
            cmd = [runuser, "-u", "nobody", "--"] + args
        else:
            cmd = [runuser, "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + args
    else:
        cmd = args
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if res.returncode != 0 and "Permission denied" in res.stderr and "postamt:" not in res.stderr:
        pytest.skip(f"the unprivileged account cannot run the binary here: {res.stderr.strip()}")
    assert res.returncode == 1, res
    assert "run it as root" in res.stderr and "--dry-run" in res.stderr, res.stderr
    assert not layout["data"].exists() and list(layout["units"].iterdir()) == []
