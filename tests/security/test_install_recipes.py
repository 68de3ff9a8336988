"""The Debian install recipes run on a machine that lacks the packages, as root and through sudo.

``scripts/apt-install.sh`` (what ``make deps-browser`` and ``make deps-postgres`` run) is
started with its presence check pointed at a missing file and a PATH holding only stand-ins
for ``apt-get``, ``sudo`` and ``id`` that record how they were called. So the recipe that a
fresh machine runs is exercised on every test run: the right ``apt-get`` calls, non-interactive,
directly as root and through sudo otherwise, and a clear failure when apt-get fails, when
nothing provides the checked file, or when there is neither root nor sudo.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "apt-install.sh"
BASH = shutil.which("bash") or "/bin/bash"

APT_GET = """#!{bash}
echo "apt-get DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "$STUB_LOG"
if [ "$1" = install ]; then
    if [ -n "$STUB_APT_FAIL" ]; then echo "E: Unable to locate package" >&2; exit 100; fi
    if [ -n "$STUB_APT_CREATES" ]; then : > "$STUB_APT_CREATES"; fi
fi
exit 0
"""
SUDO = """#!{bash}
echo "sudo $*" >> "$STUB_LOG"
exec "$@"
"""
ID = """#!{bash}
if [ "$1" = -u ]; then echo "$STUB_UID"; else exec {id} "$@"; fi
"""


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    """A folder of stand-ins and the few real tools the recipe needs (nothing else on PATH)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in (("apt-get", APT_GET), ("sudo", SUDO), ("id", ID)):
        path = folder / name
        path.write_text(text.format(bash=BASH, id=shutil.which("id")))
        path.chmod(0o755)
    for tool in ("env", "bash", "make"):
        real = shutil.which(tool)
        if real is None:
            pytest.skip(f"{tool} is not installed")
        (folder / tool).symlink_to(real)
    return folder


def _run(stubs: Path, tmp_path: Path, args: list[str], *, uid: int, sudo: bool = True, **stub_env: str):
    if not sudo:
        (stubs / "sudo").unlink(missing_ok=True)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {"PATH": str(stubs), "STUB_LOG": str(log), "STUB_UID": str(uid), "HOME": str(tmp_path), **stub_env}
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    return proc, log.read_text().splitlines()


def _install(*packages: str) -> list[str]:
    return [
        "apt-get DEBIAN_FRONTEND=noninteractive update -qq",
        f"apt-get DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends {' '.join(packages)}",
    ]


def test_present_check_file_installs_nothing(stubs, tmp_path):
    present = tmp_path / "chromium"
    present.touch()
    proc, calls = _run(stubs, tmp_path, [BASH, str(SCRIPT), str(present), "chromium"], uid=0)
    assert proc.returncode == 0 and "already installed" in proc.stdout
    assert calls == []


def test_as_root_apt_get_runs_directly_and_non_interactively(stubs, tmp_path):
    check = tmp_path / "usr-bin-chromium"
    proc, calls = _run(
        stubs, tmp_path, [BASH, str(SCRIPT), str(check), "chromium", "chromium-driver"], uid=0,
        STUB_APT_CREATES=str(check),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert calls == _install("chromium", "chromium-driver")  # no sudo, and `env` is not run as a command


def test_not_root_goes_through_sudo(stubs, tmp_path):
    check = tmp_path / "initdb"
    proc, calls = _run(
        stubs, tmp_path, [BASH, str(SCRIPT), str(check), "postgresql"], uid=1000, STUB_APT_CREATES=str(check)
    )
    assert proc.returncode == 0, proc.stderr
    sudo = [c for c in calls if c.startswith("sudo ")]
    assert sudo == [
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql",
    ]
    assert [c for c in calls if c.startswith("apt-get ")] == _install("postgresql")


def test_not_root_without_sudo_says_what_to_do(stubs, tmp_path):
    proc, calls = _run(stubs, tmp_path, [BASH, str(SCRIPT), str(tmp_path / "x"), "chromium"], uid=1000, sudo=False)
    assert proc.returncode == 1
    assert "needs root or sudo" in proc.stderr and "apt-get install -y chromium" in proc.stderr
    assert calls == []


def test_a_failing_apt_get_fails_the_recipe_by_name(stubs, tmp_path):
    proc, calls = _run(stubs, tmp_path, [BASH, str(SCRIPT), str(tmp_path / "x"), "chromium"], uid=0, STUB_APT_FAIL="1")
    assert proc.returncode == 100
    assert "apt-get install failed (exit 100) while installing chromium" in proc.stderr
    assert "Unable to locate package" in proc.stderr  # apt-get's own message is not swallowed
    assert len(calls) == 2


def test_a_package_that_does_not_provide_the_checked_file_is_an_error(stubs, tmp_path):
    proc, _ = _run(stubs, tmp_path, [BASH, str(SCRIPT), str(tmp_path / "never"), "chromium"], uid=0)
    assert proc.returncode == 1 and "still missing" in proc.stderr


@pytest.mark.parametrize(
    ("target", "variable", "packages"),
    [
        ("deps-browser", "CHROMIUM_CHECK", ("chromium", "chromium-driver")),
        ("deps-postgres", "POSTGRES_CHECK", ("postgresql",)),
    ],
)
def test_make_targets_install_the_packages_when_absent(stubs, tmp_path, target, variable, packages):
    """What ``make test`` runs first on a fresh machine, with the browser and PostgreSQL absent."""
    check = tmp_path / "absent"
    for uid, prefix in ((0, ""), (1000, "sudo ")):
        check.unlink(missing_ok=True)
        proc, calls = _run(
            stubs, tmp_path, [str(stubs / "make"), "-s", target, f"{variable}={check}"], uid=uid,
            STUB_APT_CREATES=str(check),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert [c for c in calls if c.startswith("apt-get ")] == _install(*packages)
        assert len([c for c in calls if c.startswith("sudo ")]) == (2 if prefix else 0)
