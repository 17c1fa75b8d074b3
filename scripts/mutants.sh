#!/usr/bin/env bash
# Mutation testing of the pure core: every mutant cargo-mutants makes of the engine, the
# business calendar, the policy and the overview parser must be caught by a test.
# Slow (each mutant is a rebuild and a test run), so not part of .ci/run.
#
#   bash scripts/mutants.sh            # all four files
#   bash scripts/mutants.sh -j 2       # extra arguments go to cargo mutants
#
# Only the library's unit tests and the property tests run against each mutant: they are
# what covers these files, and they take seconds, not minutes. Results: mutants.out/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "installing cargo-mutants (once)"
  cargo install --locked cargo-mutants
fi
exec cargo mutants \
  --file src/sla.rs --file src/calendar.rs --file src/policy.rs --file src/overview.rs \
  --timeout-multiplier 3 \
  "$@" \
  -- --lib --test properties
