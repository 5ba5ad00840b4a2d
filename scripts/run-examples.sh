#!/usr/bin/env bash
# Smoke-runs every example to completion, each bounded in time. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
    local name=$1
    shift
    printf -- '--- example %s %s\n' "$name" "$*"
    if ! timeout 120 cargo run --quiet --locked --example "$name" -- "$@" >"${TMPDIR:-/tmp}/mokosh-example-$name.log" 2>&1; then
        echo "example $name failed:"
        tail -n 40 "${TMPDIR:-/tmp}/mokosh-example-$name.log"
        exit 1
    fi
    tail -n 3 "${TMPDIR:-/tmp}/mokosh-example-$name.log"
}

run codec_demo
run codec_demo --json
