#!/usr/bin/env bash
#
# Runs the cmocka unit test binaries given as arguments, shows their
# output, and ends with one line "unit: N passed, N failed" counting test
# cases across all binaries. Exits non-zero when a test failed or a binary
# crashed, could not run, or did not report its results.
#
#   scripts/run-unit.sh build/tests/test_key build/tests/test_json ...

set -uo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 test-binary ..." >&2
    exit 2
fi

# cmocka's standard output format is what the summary is parsed from
export CMOCKA_MESSAGE_OUTPUT=STDOUT
unset CMOCKA_TEST_ABORT

passed=0
failed=0
broken=0

for bin in "$@"; do
    name=$(basename "$bin")

    if [ ! -x "$bin" ]; then
        echo "unit: $name: not found or not executable" >&2
        failed=$((failed + 1))
        broken=1
        continue
    fi

    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out"

    p=$(printf '%s\n' "$out" \
        | sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' \
        | tail -n 1)
    f=$(printf '%s\n' "$out" \
        | sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s).*/\1/p' \
        | tail -n 1)

    if [ -z "$p" ]; then
        # no summary: the binary crashed or aborted part way; count every
        # test that started and did not finish as failed
        started=$(printf '%s\n' "$out" | grep -c '^\[ RUN      \]')
        ok=$(printf '%s\n' "$out" | grep -c '^\[       OK \]')
        lost=$((started - ok))
        [ "$lost" -lt 1 ] && lost=1
        echo "unit: $name: exited with status $rc without a summary" >&2
        passed=$((passed + ok))
        failed=$((failed + lost))
        broken=1
        continue
    fi

    passed=$((passed + p))
    failed=$((failed + ${f:-0}))

    if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
        # cmocka returns the number of failures; anything else is a crash
        # after the summary (for instance in a destructor or at exit)
        echo "unit: $name: exited with status $rc" >&2
        broken=1
    fi
done

echo "unit: $passed passed, $failed failed"

if [ "$failed" -ne 0 ] || [ "$broken" -ne 0 ]; then
    exit 1
fi

exit 0
