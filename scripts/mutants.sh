#!/usr/bin/env bash
# Mutation testing of the pure core: every mutant cargo-mutants makes of the engine, the
# business calendar, the policy and the overview parser must be caught by a test, or be
# listed as equivalent (see the [tests] issue's closing note for the current list).
# Slow, so not part of .ci/run: about 40 minutes for sla, calendar and policy with the
# unit tests alone on a 2-core machine, much more with the property test.
#
#   bash scripts/mutants.sh                       # all four files, unit tests + properties
#   bash scripts/mutants.sh --file src/sla.rs     # extra arguments go to cargo mutants
#   FAST=1 bash scripts/mutants.sh                # unit tests only (a first pass)
#
# Only the library's unit tests (and the property test) build and run for each mutant:
# they are what covers these files, and building every integration test for each mutant
# would multiply the time. Without debug info a mutant builds in about 3 seconds.
# Results: mutants.out/ (missed.txt lists the survivors). `--iterate` reruns only those.
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
exec cargo mutants "${files[@]}" "${tests[@]}" --timeout-multiplier 3 -j 1 "$@"
