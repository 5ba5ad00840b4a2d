#!/usr/bin/env bash
# Recompute every test vector of docs/PROTOCOL.md with the independent Python
# reference client (scripts/reference_client). Needs only python3 + pip.
#
# The venv lives in $MOKOSH_CACHE_DIR/pyref-venv if MOKOSH_CACHE_DIR is set,
# else ${XDG_CACHE_HOME:-$HOME/.cache}/mokosh/pyref-venv. It is rebuilt when
# requirements.txt changes. Set PYTHON to choose the interpreter (>= 3.11).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
client="$here/reference_client"
python="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

if [[ -n "${MOKOSH_CACHE_DIR:-}" ]]; then
    venv="$MOKOSH_CACHE_DIR/pyref-venv"
else
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/mokosh/pyref-venv"
fi

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "check-reference-client: $python is older than 3.11" >&2
    exit 2
}

stamp="$venv/.requirements"
if [[ ! -f "$stamp" ]] || ! cmp -s "$client/requirements.txt" "$stamp"; then
    rm -rf "$venv"
    mkdir -p "$venv"
    if "$python" -m venv "$venv" >/dev/null 2>&1 && [[ -x "$venv/bin/python" ]]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$client/requirements.txt"
    else
        # No venv module (e.g. Debian without python3-venv): install with
        # pip --target into the same directory instead.
        rm -rf "$venv" && mkdir -p "$venv/site"
        "$python" -m pip install --quiet --disable-pip-version-check \
            --target "$venv/site" -r "$client/requirements.txt"
    fi
    cp "$client/requirements.txt" "$stamp"
fi

if [[ -x "$venv/bin/python" ]]; then
    run=("$venv/bin/python")
else
    export PYTHONPATH="$venv/site${PYTHONPATH:+:$PYTHONPATH}"
    run=("$python")
fi
# Behavioural rules first (rejections, a full session against a responder),
# then every test vector in the specification.
"${run[@]}" "$client/test_rules.py" 2>&1 | tail -n 3
exec "${run[@]}" "$client/check_vectors.py" "$root/docs/PROTOCOL.md"
