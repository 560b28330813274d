#!/usr/bin/env bash
#
# Builds and runs libFuzzer harnesses of common/ for a short while each.
#
#   scripts/fuzz.sh common/fuzz/fuzz_*.c
#   FUZZ_SECONDS=300 scripts/fuzz.sh common/fuzz/fuzz_json.c
#
# Each harness common/fuzz/fuzz_<area>.c is built with clang (ASan, UBSan
# and libFuzzer) into build/fuzz/fuzz_<area> and run for FUZZ_SECONDS
# (default 10) on a temporary copy of common/fuzz/corpus/<area>/, so the
# inputs it discovers never land in the repository. Crash reproducers go to
# build/fuzz/artifacts/. Exits non-zero if a harness fails to build, or
# finds a crash, leak, timeout or undefined behaviour.

set -uo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 common/fuzz/fuzz_<area>.c ..." >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-10}
clang=${FUZZ_CC:-clang}
out="$root/build/fuzz"

harnesses=()
for h in "$@"; do
    if [ ! -f "$h" ]; then
        echo "fuzz: $h: no such file" >&2
        exit 2
    fi

    harnesses+=("$(cd "$(dirname "$h")" && pwd)/$(basename "$h")")
done

cd "$root" || exit 2

mkdir -p "$out/artifacts"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nx-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

failed=0

for h in "${harnesses[@]}"; do
    name=$(basename "$h" .c)
    area=${name#fuzz_}
    bin="$out/$name"
    log="$out/$name.log"

    # UBSan must abort, or libFuzzer would not notice it
    if ! "$clang" -g -O1 -fsanitize=fuzzer,address,undefined \
            -fno-sanitize-recover=all -Wall -Wextra -Werror -std=gnu11 \
            -I"$root/common" \
            -o "$bin" "$h" "$root"/common/nx_*.c -lyajl -lcrypto -lpcre2-8
    then
        echo "fuzz: $name: build failed"
        failed=1
        continue
    fi

    corpus="$tmp/$name"
    mkdir -p "$corpus"
    if [ -d "common/fuzz/corpus/$area" ]; then
        cp -R "common/fuzz/corpus/$area/." "$corpus/"
    else
        echo "fuzz: $name: no seed corpus in common/fuzz/corpus/$area"
    fi

    if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$out/artifacts/$name-" -print_final_stats=1 \
            "$corpus" > "$log" 2>&1
    then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz: $name: ok, ${runs:-?} runs in ${seconds}s"
    else
        echo "fuzz: $name: FAILED (log: $log)"
        tail -n 40 "$log"
        failed=1
    fi
done

exit "$failed"
