# Sourced by scripts/test and scripts/demo: installs and runs the ministack AWS emulator
# (LocalStack-compatible, no Docker needed) with SigV4 and IAM enforcement on (AUTH=true).

MINISTACK_VERSION=1.5.33
MINISTACK_VENV="${MINISTACK_VENV:-$PWD/.venv/ministack}"
MINISTACK_PID=""

ensure_ministack() {
    if [ -x "$MINISTACK_VENV/bin/ministack" ] &&
        "$MINISTACK_VENV/bin/pip" show ministack 2>/dev/null | grep -q "^Version: $MINISTACK_VERSION$"; then
        return
    fi
    echo "installing ministack $MINISTACK_VERSION into $MINISTACK_VENV" >&2
    python3 -m venv "$MINISTACK_VENV"
    "$MINISTACK_VENV/bin/pip" install --quiet --disable-pip-version-check "ministack==$MINISTACK_VERSION"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_ministack PORT LOGFILE: starts it in the background and waits (at most 30 s) for health.
start_ministack() {
    local port=$1 log=$2 state
    state=$(mktemp -d "${TMPDIR:-/tmp}/glg-ministack.XXXXXX")
    AUTH=true GATEWAY_PORT="$port" BIND_HOST=127.0.0.1 TMPDIR="$state" \
        "$MINISTACK_VENV/bin/ministack" >"$log" 2>&1 &
    MINISTACK_PID=$!
    for _ in $(seq 1 150); do
        if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
            "http://127.0.0.1:$port/_ministack/health" >/dev/null 2>&1; then
            return
        fi
        if ! kill -0 "$MINISTACK_PID" 2>/dev/null; then
            echo "ministack exited at start; its log ($log):" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "ministack did not become healthy on port $port within 30 s; log: $log" >&2
    return 1
}

stop_ministack() {
    if [ -n "$MINISTACK_PID" ]; then
        kill "$MINISTACK_PID" 2>/dev/null || true
        wait "$MINISTACK_PID" 2>/dev/null || true
        MINISTACK_PID=""
    fi
}

# The gateway and the tests reach the emulator through the standard AWS variables only, so the
# same tests run against LocalStack or another emulator by pointing AWS_ENDPOINT_URL at it.
export_emulator_env() {
    export AWS_ENDPOINT_URL="http://127.0.0.1:$1"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
    unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL_STS AWS_ENDPOINT_URL_LAMBDA
    # Never let the SDK wander off to IMDS or a developer's real profile.
    export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
}
