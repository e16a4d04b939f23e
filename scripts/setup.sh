# Shared setup for scripts/start and scripts/test: system packages and the virtualenv.
# Sourced, not run. Idempotent: a second run installs nothing new.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

say() { printf 'nocontact setup: %s\n' "$*" >&2; }
die() { printf 'nocontact setup: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# ensure_apt_packages PKG...: install the Debian packages that are not installed yet.
ensure_apt_packages() {
    local missing=()
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing system packages (${missing[*]}) and no apt-get to install them"
    say "installing system packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

check_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON found; install Python 3.11 or newer"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$("$PYTHON" --version 2>&1) is too old; nocontact needs Python 3.11 or newer"
}

# make_venv EXTRAS: create .venv if needed and install nocontact into it (editable).
make_venv() {
    local extras="$1"
    check_python
    # ICU headers and a compiler, for PyICU (the Unicode confusables skeleton).
    ensure_apt_packages libicu-dev pkg-config g++
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        ensure_apt_packages python3-venv
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    say "installing nocontact${extras:+ with [$extras]} into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT${extras:+[$extras]}"
}
