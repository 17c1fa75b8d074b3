#!/usr/bin/env bash
# Checks the units as CI does: `systemd-analyze verify` must print nothing (it exits 0 on a
# misspelt key and only warns), and the exposure must stay at or below 2.0.
# Usage: systemd/check.sh PATH-TO-BUILT-BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "$1")
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is missing: installing Debian's systemd package"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; } || {
    echo "FAILED: cannot install systemd-analyze; the unit was not checked" >&2
    exit 1
  }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The repository's unit (cargo install: /usr/local/bin) and the Debian package's (/usr/bin).
for unit in systemd/inbox-sla.service packaging/deb/inbox-sla.service; do
  # verify checks that ExecStart's binary exists: point a copy at the one just built. It
  # also runs `man` for man: documentation, which only the installed package has.
  sed -E -e "s#/usr(/local)?/bin/inbox-sla#$binary#g" -e 's#^Documentation=man:[^ ]+ #Documentation=#' \
    "$unit" > "$tmp/inbox-sla.service"
  if ! systemd-analyze verify "$tmp/inbox-sla.service" >"$tmp/verify.out" 2>&1 || [ -s "$tmp/verify.out" ]; then
    echo "FAILED: systemd-analyze verify $unit:" >&2
    cat "$tmp/verify.out" >&2
    exit 1
  fi
  echo "systemd-analyze verify $unit: clean"
  systemd-analyze security --offline=yes --threshold=20 "$unit" >"$tmp/security.out" 2>&1 || {
    tail -n 3 "$tmp/security.out" >&2
    echo "FAILED: the exposure of $unit rose above 2.0" >&2
    exit 1
  }
  echo "$unit: $(tail -n 1 "$tmp/security.out")"
done
