#!/usr/bin/env bash
# WebSocket conformance (the Autobahn|Testsuite cases of groups 1-7, 9 scaled, 10) against
# the reference echo server (Debian's python3-websockets) and against chat-gateway --echo.
#
# Usage: tests/conformance/run.sh [REPORT_DIR]     (default: a new temporary directory)
#
# Runs three passes, each on its own server started here on a free loopback port:
#   reference       reference_echo.py (websockets, 16 MiB message limit), every case
#   gateway         chat-gateway --echo with 16 MiB frame/message limits, every case
#   gateway-limits  chat-gateway --echo with its default 64 KiB limits, cases 9.1-9.6:
#                   messages above 64 KiB must be refused with close 1009
# and writes REPORT_DIR/<pass>.json (per-case details), <pass>.txt (the runner's output)
# and <server>.log. Exit status: 0 when no case FAILED, 1 when one did, 2 on another error.
#
# Environment: CHAT_BUILD_DIR (default: build), CHAT_GATEWAY (the binary; default
# $CHAT_BUILD_DIR/gateway/chat-gateway), WSCONF_G9_SIZE_DIV (default 8) and
# WSCONF_G9_COUNT_DIV (default 1) to scale group 9, WSCONF_CASE_TIMEOUT (default 30 s).
# Needs Debian's python3-autobahn and python3-websockets, run with /usr/bin/python3.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
BUILD_DIR=${CHAT_BUILD_DIR:-$ROOT/build}
GATEWAY=${CHAT_GATEWAY:-$BUILD_DIR/gateway/chat-gateway}
SIZE_DIV=${WSCONF_G9_SIZE_DIV:-8}
COUNT_DIV=${WSCONF_G9_COUNT_DIV:-1}
CASE_TIMEOUT=${WSCONF_CASE_TIMEOUT:-30}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
err() { printf 'error: %s\n' "$*" >&2; }

case ${1:-} in
-h | --help) sed -n '2,19p' "$0"; exit 0 ;;
esac

if ! "$PY" -c 'import autobahn, websockets' 2>/dev/null; then
    err "$PY lacks autobahn or websockets: apt-get install -y python3-autobahn python3-websockets"
    exit 2
fi
if [ ! -x "$GATEWAY" ]; then
    err "no gateway binary at $GATEWAY (build first: cmake -S . -B build && cmake --build build)"
    exit 2
fi

OUT=${1:-$(mktemp -d "${TMPDIR:-/tmp}/wsconformance.XXXXXX")}
mkdir -p "$OUT" || { err "cannot create $OUT"; exit 2; }
OUT=$(cd "$OUT" && pwd)

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        # give each server 5 s to stop, then kill it
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until 127.0.0.1:PORT accepts (0), or PID died / 10 s passed (1).
wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        if "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' \
            "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# start_gateway NAME [options...]: start chat-gateway --echo on a free port; sets PORT.
start_gateway() {
    local name=$1 pid v unset=()
    shift
    # only the options given here: no CHAT_* setting from the caller's environment
    for v in $(compgen -e | grep '^CHAT_'); do unset+=(-u "$v"); done
    for _ in 1 2 3; do
        PORT=$(free_port)
        env "${unset[@]}" "$GATEWAY" --echo --host 127.0.0.1 --port "$PORT" --workers 1 "$@" \
            >"$OUT/$name.log" 2>&1 &
        pid=$!
        if wait_port "$PORT" "$pid"; then
            PIDS+=("$pid")
            return 0
        fi
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    err "$name did not start (see $OUT/$name.log)"
    return 1
}

start_reference() {
    local pid
    rm -f "$OUT/reference.port"
    "$PY" "$HERE/reference_echo.py" --host 127.0.0.1 --port 0 --port-file "$OUT/reference.port" \
        >"$OUT/reference.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        [ -s "$OUT/reference.port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -s "$OUT/reference.port" ] || { err "the reference server did not start (see $OUT/reference.log)"; return 1; }
    PORT=$(cat "$OUT/reference.port")
    wait_port "$PORT" "$pid"
}

FAILED=0
ERROR=0
# suite NAME URL AGENT [runner options...]
suite() {
    local name=$1 url=$2 agent=$3 rc
    shift 3
    say "conformance: $name ($url)"
    "$PY" "$HERE/wsconformance.py" "$url" --agent "$agent" --report "$OUT/$name.json" -q \
        --case-timeout "$CASE_TIMEOUT" --g9-size-div "$SIZE_DIV" --g9-count-div "$COUNT_DIV" "$@" \
        2>&1 | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
    case $rc in
    0) ;;
    1) FAILED=1 ;;
    *) ERROR=1; err "the runner stopped with status $rc ($name)" ;;
    esac
}

T0=$(date +%s)
WSVER=$("$PY" -c 'import websockets; print(websockets.__version__)')

if start_reference; then
    suite reference "ws://127.0.0.1:$PORT/" "websockets $WSVER (reference_echo.py)"
else
    ERROR=1
fi

if start_gateway gateway --max-frame-bytes 16m --max-message-bytes 16m --max-outbuf 64m; then
    suite gateway "ws://127.0.0.1:$PORT/ws" "chat-gateway --echo, 16m limits"
else
    ERROR=1
fi

if start_gateway gateway-limits; then
    suite gateway-limits "ws://127.0.0.1:$PORT/ws" "chat-gateway --echo, default limits" \
        --cases '9.1.*,9.2.*,9.3.*,9.4.*,9.5.*,9.6.*' --max-message-size 65536
else
    ERROR=1
fi

cleanup
say "reports in $OUT ($(($(date +%s) - T0)) s)"
if [ $ERROR = 1 ]; then exit 2; fi
if [ $FAILED = 1 ]; then
    err "some WebSocket conformance case FAILED (details: $OUT/*.json)"
    exit 1
fi
say "WebSocket conformance: no case FAILED"
exit 0
