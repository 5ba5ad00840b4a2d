#!/usr/bin/env bash
# Smoke-runs every example to completion, each bounded in time. Used by .ci/run.
#
# Every example exits non-zero when what it demonstrates did not happen, so a
# regression fails this script. Everything uses 127.0.0.1 and ephemeral ports
# (port 0), so it never collides with a test_server already running.
set -euo pipefail
cd "$(dirname "$0")/.."

logs=$(mktemp -d "${TMPDIR:-/tmp}/mokosh-examples.XXXXXX")
started=$(date +%s)
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Build once (bounded), so each run below measures the example, not the build.
echo "--- building examples"
timeout 900 cargo build --quiet --locked --examples
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug/examples"

# no_colour_codes LOG: logs written to a file must not carry ANSI escapes
# (colour is for terminals only).
no_colour_codes() {
    if grep -q $'\e\[' "$1"; then
        echo "ANSI escape codes in $1 (output is not a terminal):"
        grep -n $'\e\[' "$1" | head -n 5 | cat -v
        exit 1
    fi
}

# run NAME [ARGS...]: runs an example (60 s max) and requires exit status 0.
run() {
    local name=$1
    shift
    local log="$logs/$name.log" t0
    t0=$(date +%s)
    printf -- '--- example %s %s\n' "$name" "$*"
    if ! timeout 60 "$bin/$name" "$@" >"$log" 2>&1; then
        echo "example $name failed:"
        tail -n 40 "$log"
        exit 1
    fi
    no_colour_codes "$log"
    tail -n 3 "$log"
    printf '    (%ss)\n' "$(($(date +%s) - t0))"
}

run codec_demo
run codec_demo --json
run websocket_echo_test
run keepalive_demo --seconds 3
run encryption_compression_demo
run message_registry_test
run multiclient_demo
run memory_transport_test

# --- test_server + test_client, as two processes over WebSocket.
key_dir=$(mktemp -d "${TMPDIR:-/tmp}/mokosh-keys.XXXXXX")
server_log="$logs/test_server.log"
# The server stops by itself after --seconds (exit 0); 10 s leaves room for the
# client's 3 s run plus start-up on a loaded machine.
echo "--- example test_server --addr 127.0.0.1:0 --seconds 10 (background)"
timeout 60 "$bin/test_server" --addr 127.0.0.1:0 --seconds 10 --key-dir "$key_dir" \
    >"$server_log" 2>&1 &
server_pid=$!
# Wait (at most 20 s) for the ready line, which carries the bound address.
addr=""
for _ in $(seq 200); do
    addr=$(sed -n 's/^mokosh test_server ready addr=\([^ ]*\).*/\1/p' "$server_log" | head -n 1)
    [[ -n "$addr" ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$addr" ]]; then
    echo "test_server did not print its ready line:"
    tail -n 40 "$server_log"
    exit 1
fi
echo "    test_server ready at $addr"

run test_client --addr "$addr" --key-file "$key_dir/test_server.pub" --seconds 3

# A client pointed at a closed port must fail (non-zero), not hang or pass.
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
echo "--- example test_client against closed port $closed_port (must fail)"
set +e
timeout 30 "$bin/test_client" --addr "127.0.0.1:$closed_port" \
    --key-file "$key_dir/test_server.pub" --seconds 1 >"$logs/test_client_closed.log" 2>&1
status=$?
set -e
if [[ $status -eq 0 || $status -eq 124 ]]; then
    echo "test_client against a closed port exited with $status (expected a failure status)"
    tail -n 20 "$logs/test_client_closed.log"
    exit 1
fi
echo "    exited with status $status as expected"

set +e
wait "$server_pid"
status=$?
set -e
server_pid=""
if [[ $status -ne 0 ]]; then
    echo "test_server exited with status $status"
    tail -n 40 "$server_log"
    exit 1
fi
tail -n 2 "$server_log"
no_colour_codes "$server_log"
rm -rf "$key_dir"

printf 'all examples passed in %ss (logs in %s)\n' "$(($(date +%s) - started))" "$logs"
