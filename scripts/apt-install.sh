#!/usr/bin/env bash
# Install Debian packages unless a file they provide is already present.
#
#   scripts/apt-install.sh CHECK_PATH PACKAGE...
#
# CHECK_PATH: a file the packages install (e.g. /usr/bin/chromium); when it exists nothing is
# done. Runs apt-get directly as root, through sudo otherwise. The test suite runs this script
# with a stub apt-get first on PATH and CHECK_PATH pointed at a missing file, so the recipe
# itself is exercised on every run, not only on a fresh machine.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CHECK_PATH PACKAGE..." >&2
    exit 2
fi
check=$1
shift
if [ -e "$check" ]; then
    echo "$check present: $* already installed"
    exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "installing $* needs root or sudo; run as root: apt-get install -y $*" >&2
        exit 1
    fi
    sudo=(sudo)
fi
run_apt_get() {
    local rc=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "apt-get $1 failed (exit $rc) while installing $packages; see apt-get's message above" >&2
        exit "$rc"
    fi
}
packages="$*"
echo "installing Debian packages: $packages"
run_apt_get update -qq
run_apt_get install -y -qq --no-install-recommends "$@" >/dev/null
if [ ! -e "$check" ]; then
    echo "apt-get installed $* but $check is still missing" >&2
    exit 1
fi
