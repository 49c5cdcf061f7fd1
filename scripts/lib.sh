# shellcheck shell=bash
# Shared by scripts/run, scripts/test, scripts/bench and scripts/chaos: package installation,
# the build, the npm dependencies, and the throwaway PostgreSQL and Redis under .run/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR="$ROOT/.run"
PG_BIN=/usr/lib/postgresql/15/bin

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages of scripts/debian-packages.txt that are missing.
ensure_packages() {
    local want=() missing=()
    mapfile -t want < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$ROOT/scripts/debian-packages.txt" | tr -d ' ')
    for p in "${want[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# build DIR [cmake options...]
build() {
    local dir=$1
    shift
    local werror=OFF
    [ -n "${CI:-}" ] && werror=ON
    say "building in ${dir#"$ROOT"/}"
    cmake -S "$ROOT" -B "$dir" -DCHAT_WERROR=$werror "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)" 2>&1 | grep -E 'error|warning|Error' || true
    [ -x "$dir/gateway/chat-gateway" ] || die "build failed (see: cmake --build $dir)"
}

# npm ci in a package directory when node_modules is missing or older than the lockfile.
ensure_npm() {
    local dir=$1
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        say "installing npm packages in ${dir#"$ROOT"/} (from the lockfile)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}

# A random secret, kept in .run/ so that tokens stay valid across restarts.
dev_secret() {
    mkdir -p "$RUN_DIR"
    [ -s "$RUN_DIR/jwt-secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN_DIR/jwt-secret"
    cat "$RUN_DIR/jwt-secret"
}

# wait_http URL [seconds]
wait_http() {
    local url=$1 t=${2:-20} i
    for ((i = 0; i < t * 10; i++)); do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
