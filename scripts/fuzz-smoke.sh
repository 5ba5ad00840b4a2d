#!/usr/bin/env bash
# Smoke-fuzz every cargo-fuzz target in fuzz/ for a bounded time.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]     (default 20)
#
# Installs cargo-fuzz if missing, builds all targets without a sanitizer
# (`-s none`, which works on the stable toolchain; release + debug assertions),
# seeds each corpus from fuzz/seeds/<target>/, runs the targets one after the
# other, prints one summary line per target and exits non-zero if any target
# crashed, timed out or failed to run. Crash reproducers land in
# fuzz/artifacts/<target>/.
#
# Environment:
#   CARGO_TARGET_DIR      if set, the fuzz build goes to "$CARGO_TARGET_DIR/fuzz"
#                         (default: fuzz/target)
#   FUZZ_TARGETS          space-separated subset of targets to run
#   FUZZ_BUILD_TIMEOUT    seconds allowed for the cargo-fuzz install and for the
#                         build, each (default 3600)
#   CARGO_BUILD_JOBS      passed through to cargo as usual
set -euo pipefail

secs="${1:-20}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]  (a positive integer, got '$secs')" >&2
    exit 2
fi
build_timeout="${FUZZ_BUILD_TIMEOUT:-3600}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    target_dir="$CARGO_TARGET_DIR/fuzz"
else
    target_dir="$fuzz_dir/target"
fi
log_dir="$target_dir/fuzz-smoke-logs"
mkdir -p "$log_dir"

all_targets=(
    envelope_decode
    handshake_decode
    control_decode
    decompress
    codec_decode
    server_session
    established_session
)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

# --- cargo-fuzz -----------------------------------------------------------
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    timeout -k 30 "$build_timeout" cargo install cargo-fuzz --locked
fi
echo "fuzz-smoke: $(cargo fuzz --version | head -n 1)"

cd "$root"
# cargo-fuzz gets the target directory explicitly; keep cargo from seeing a
# different one through the environment.
fuzz() {
    env -u CARGO_TARGET_DIR cargo fuzz "$@"
}

listed="$(fuzz list)"
for t in "${all_targets[@]}"; do
    if ! grep -qx "$t" <<<"$listed"; then
        echo "fuzz-smoke: target $t is not in fuzz/Cargo.toml" >&2
        exit 2
    fi
done
for t in $listed; do
    if [[ " ${all_targets[*]} " != *" $t "* ]]; then
        echo "fuzz-smoke: fuzz/Cargo.toml has target $t that this script does not run" >&2
        exit 2
    fi
done

# --- build ------------------------------------------------------------------
echo "fuzz-smoke: building ${#targets[@]} target(s) into $target_dir"
build_start=$SECONDS
timeout -k 30 "$build_timeout" env -u CARGO_TARGET_DIR \
    cargo fuzz build -s none --target-dir "$target_dir"
echo "fuzz-smoke: build took $((SECONDS - build_start)) s"

# --- run --------------------------------------------------------------------
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$t"
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$t"
    if [[ -d "$fuzz_dir/seeds/$t" ]]; then
        cp -n "$fuzz_dir/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    log="$log_dir/$t.log"
    echo "fuzz-smoke: running $t for ${secs}s (log: $log)"
    status=0
    # Hard bound: the fuzzing time plus startup/corpus loading; -timeout and
    # -rss_limit_mb turn a hanging or ballooning input into a failure.
    timeout -k 30 "$((secs + 180))" env -u CARGO_TARGET_DIR \
        cargo fuzz run -s none --target-dir "$target_dir" "$t" "$corpus" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?

    # libFuzzer's status lines look like
    #   #123456 DONE   cov: 1234 ft: 5678 corp: 90/12Kb lim: 4096 exec/s: 6172 rss: 80Mb
    last="$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)"
    runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)"
    [[ -n "$runs" ]] || runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")"
    field() { sed -nE "s|.*[[:space:]]$1:[[:space:]]*([^[:space:]]+).*|\1|p" <<<"$last"; }
    stats="runs=${runs:-?} cov=$(field cov) ft=$(field ft) corp=$(field corp) exec/s=$(field exec/s)"
    if [[ $status -eq 0 ]]; then
        line="$(printf '%-20s ok     %s' "$t" "$stats")"
    else
        kind="failed (exit $status)"
        [[ $status -eq 124 || $status -eq 137 ]] && kind="hung (killed after $((secs + 180))s)"
        grep -q 'ERROR: libFuzzer: timeout' "$log" && kind="input timeout"
        grep -q 'out-of-memory' "$log" && kind="out of memory"
        grep -qE 'panicked at|deadly signal' "$log" && kind="CRASH"
        artifact="$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)"
        line="$(printf '%-20s %s  %s%s' "$t" "$kind" "$stats" "${artifact:+ artifact=$artifact}")"
        failed+=("$t")
        echo "---- last lines of $log ----" >&2
        tail -n 40 "$log" >&2
        echo "----" >&2
    fi
    echo "fuzz-smoke: $line"
    summary+=("$line")
done

echo
echo "fuzz-smoke summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} target(s) ran clean"
