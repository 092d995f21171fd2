#!/usr/bin/env bash
# Run the test suite the way `make test` does, while two CPU-bound hogs keep both cores busy.
# CI runs on a shared 2-core machine; a test that only passes on an idle one is a test that fails there.
#
#   bash bench/stress_test.sh [pytest args...]
#   RUNS=3 HOGS=2 PYTHON=.venv/bin/python bash bench/stress_test.sh -q -x
#
# Exits non-zero if any run fails. The hogs are always killed on exit (normal, error, Ctrl-C).
set -euo pipefail

# Work from the checkout root, whichever directory we were started from.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
RUNS="${RUNS:-1}"
HOGS="${HOGS:-2}"

if ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; then
    echo "stress_test.sh: RUNS must be a positive integer, got '$RUNS'" >&2
    exit 2
fi
if ! [[ "$HOGS" =~ ^[0-9]+$ ]]; then
    echo "stress_test.sh: HOGS must be a non-negative integer, got '$HOGS'" >&2
    exit 2
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "stress_test.sh: no python at '$PYTHON' (run 'make test' once to create .venv, or set PYTHON)" >&2
    exit 2
fi

hog_pids=()
cleanup() {
    local pid
    for pid in "${hog_pids[@]+"${hog_pids[@]}"}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${hog_pids[@]+"${hog_pids[@]}"}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 "$HOGS"); do
    # A pure busy loop: no I/O, no memory, just one core's worth of competition.
    "$PYTHON" -c 'while True: pass' &
    hog_pids+=("$!")
done
echo "stress_test.sh: ${#hog_pids[@]} CPU hog(s) running (pids: ${hog_pids[*]-none}); $RUNS run(s)"

failed=0
summaries=()
for run in $(seq 1 "$RUNS"); do
    log="$(mktemp "${TMPDIR:-/tmp}/paymon-stress.XXXXXX")"
    start=$SECONDS
    echo "== run $run/$RUNS: $PYTHON -m pytest --cov --cov-report=term $*"
    status=0
    "$PYTHON" -m pytest --cov --cov-report=term "$@" 2>&1 | tee "$log" || status=$?
    elapsed=$((SECONDS - start))
    # pytest's final "=== N passed, M failed in Xs ===" line (or -q's bare "N passed in Xs").
    summary="$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$log" | tail -n 1 || true)"
    rm -f "$log"
    summaries+=("run $run/$RUNS: exit $status after ${elapsed}s: ${summary:-<no summary line>}")
    if [[ $status -ne 0 ]]; then
        failed=$((failed + 1))
    fi
done

echo "== stress summary (${#hog_pids[@]} CPU hogs)"
printf '%s\n' "${summaries[@]}"
if [[ $failed -ne 0 ]]; then
    echo "stress_test.sh: $failed of $RUNS run(s) failed" >&2
    exit 1
fi
echo "stress_test.sh: all $RUNS run(s) passed"
