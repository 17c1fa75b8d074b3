#!/usr/bin/env bash
# Mutation testing of the pure core: every mutant cargo-mutants makes of the engine, the
# business calendar, the policy and the overview parser must be caught by a test, or be
# listed, with the reason it changes nothing, in scripts/mutants-equivalent.txt.
# Slow, so not part of .ci/run: about 40 minutes for sla, calendar and policy and 35 for
# the overview with the unit tests alone on a 2-core machine, much more with the
# property test.
#
#   bash scripts/mutants.sh                       # all four files, unit tests + properties
#   bash scripts/mutants.sh --file src/sla.rs     # extra arguments go to cargo mutants
#   FAST=1 bash scripts/mutants.sh                # unit tests only (a first pass)
#
# Only the library's unit tests (and the property test) build and run for each mutant:
# they are what covers these files, and building every integration test for each mutant
# would multiply the time. Without debug info a mutant builds in about 3 seconds.
# Results: $OUT/mutants.out/ (default ./mutants.out; missed.txt lists the survivors);
# `--iterate` reruns only those. Survivors are then checked against
# scripts/mutants-equivalent.txt: the script fails on any that is not listed there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "installing cargo-mutants (once)"
  cargo install --locked cargo-mutants
fi
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
files=(--file src/sla.rs --file src/calendar.rs --file src/policy.rs --file src/overview.rs)
tests=(--cargo-arg=--lib)
[ "${FAST:-0}" = 1 ] || tests+=(--cargo-arg=--test=properties)
if [ "$#" -gt 0 ] && printf '%s\n' "$@" | grep -q -- '^--file$'; then
  files=()
fi
out=${OUT:-.}
status=0
cargo mutants "${files[@]}" "${tests[@]}" --timeout-multiplier 3 -j 1 -o "$out" "$@" || status=$?
# 0: all caught; 2: some missed; 3: some timed out (a mutant that hangs the tests is caught).
missed="$out/mutants.out/missed.txt"
[ -f "$missed" ] || exit "$status"
known=$(grep -v '^#' scripts/mutants-equivalent.txt | grep . | sort -u)
new=$(sed -E 's/:[0-9]+:[0-9]+:/:/' "$missed" | sort -u | comm -23 - <(echo "$known"))
echo "survivors: $(grep -c . "$missed" || true), listed as equivalent in scripts/mutants-equivalent.txt: $(sed -E 's/:[0-9]+:[0-9]+:/:/' "$missed" | sort -u | comm -12 - <(echo "$known") | grep -c . || true)"
if [ -n "$new" ]; then
  echo "NOT LISTED (kill each with a test, or list it with the reason it changes nothing):"
  echo "$new"
  exit 2
fi
case $status in 0 | 2 | 3) exit 0 ;; *) exit "$status" ;; esac
