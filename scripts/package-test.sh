#!/usr/bin/env bash
# Proof by installing (issue "package"): builds the Debian package, checks it with lintian,
# installs it with apt into a clean Debian 12 root booted under a real systemd
# (systemd-nspawn), configures it against a loopback Wawp fake, and runs what the README
# tells an administrator to: `systemctl enable --now`, `systemctl reload`, `apt purge`.
# It fails unless the service polls and escalates (to the journal and to a webhook),
# reloads without a restart, and purge leaves nothing but the administrator's own files.
#
# Usage: scripts/package-test.sh [PATH/TO/inbox-sla_VERSION_ARCH.deb | --profile PROFILE]
#   Without a path it runs `cargo deb` (installing cargo-deb when missing), the release
#   build; CI passes --profile ci-package (Cargo.toml: the same package, unoptimised).
#   Needs root, and on a fresh machine apt-get (mmdebstrap, systemd-container, lintian).
#   The clean root is cached in $INBOX_SLA_ROOT_CACHE (default /var/cache/inbox-sla-test),
#   rebuilt when older than a week. Every step and its time goes to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n== [%3ds] %s\n' $((SECONDS - started)) "$*"; }
leader=""
fail() {
  echo "FAILED: $*" >&2
  if [ -n "$leader" ]; then
    echo "--- systemctl status inbox-sla; journalctl -u inbox-sla:" >&2
    nsenter -t "$leader" -a -- systemctl status inbox-sla --no-pager >&2 || true
    nsenter -t "$leader" -a -- journalctl -u inbox-sla --no-pager -o short-precise >&2 || true
  fi
  exit 1
}

missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v lintian >/dev/null || missing+=(lintian)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

deb=${1:-}
profile=release
if [ "$deb" = --profile ]; then
  profile=${2:?--profile needs a Cargo profile}
  deb=""
fi
if [ -z "$deb" ]; then
  if ! cargo deb --version >/dev/null 2>&1; then
    step "installing cargo-deb"
    cargo install cargo-deb --locked --quiet
  fi
  step "cargo deb --profile $profile"
  # The build's progress goes to stderr; the package's path is the last line on stdout.
  deb=$(cargo deb --profile "$profile" | tail -n 1)
fi
[ -f "$deb" ] || fail "no package at '$deb'"
deb=$(realpath "$deb")
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"

step "lintian (errors fail; warnings and info are listed)"
lint_ok=yes
lint=$(lintian --fail-on error -I "$deb" 2>&1) || lint_ok=no
grep -v 'root privileges' <<<"$lint" || true
[ "$lint_ok" = yes ] || fail "lintian found errors"

work=$(mktemp -d /var/tmp/inbox-sla-package-test.XXXXXX)
nspawn_pid=""
fake_pid=""
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  if [ -n "$fake_pid" ]; then
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cache=${INBOX_SLA_ROOT_CACHE:-/var/cache/inbox-sla-test}
tarball=$cache/bookworm-systemd.tar
mkdir -p "$cache"
if [ ! -f "$tarball" ] || [ -n "$(find "$tarball" -mtime +7)" ]; then
  step "mmdebstrap: a clean Debian 12 root with systemd"
  mmdebstrap --quiet --format=tar --variant=apt --include=systemd,systemd-sysv,dbus,man-db,bash-completion \
    bookworm "$tarball.new"
  mv "$tarball.new" "$tarball"
fi
root=$work/root
mkdir "$root"
tar -C "$root" -xf "$tarball"
cp "$deb" "$root/root/"

step "loopback fakes: Wawp and a webhook receiver, on the host (nspawn shares its network)"
token="tok-$RANDOM$RANDOM"
python3 scripts/package-test-fake.py "$token" "$work/port" "$work/fake.log" &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
touch "$work/fake.log"
echo "Wawp fake and webhook on 127.0.0.1:$port; the daemon's /healthz will be on 127.0.0.1:$http_port"

step "boot the root under systemd (systemd-nspawn -b)"
systemd-nspawn -D "$root" --register=no --keep-unit -b -M "inbox-sla-test-$$" \
  </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 300); do
  leader=$(pgrep -P "$nspawn_pid" | head -n 1 || true)
  [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
  leader=""
  sleep 0.1
done
[ -n "$leader" ] || { cat "$work/console.log"; fail "systemd did not start in the container"; }
in_root() { nsenter -t "$leader" -a -- "$@"; }
# PID 1 is up before its control socket: ask until it answers, then until it has booted.
state=""
for _ in $(seq 150); do
  state=$(in_root systemctl is-system-running --wait 2>/dev/null || true)
  [ -n "$state" ] && break
  sleep 0.2
done
[ -n "$state" ] || fail "systemd in the container does not answer"
echo "systemd $(in_root systemctl --version | head -n 1 | awk '{print $2}') is $state"

step "apt install ./$(basename "$deb") (after apt-get update: its dependencies come from the mirror)"
in_root apt-get update -qq || fail "apt-get update in the root"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "/root/$(basename "$deb")" 2>&1 |
  grep -v -e '^Reading' -e '^Building' -e 'Reading database' || fail "apt install failed"

step "what the package installed"
in_root dpkg -L inbox-sla | sort
echo "conffiles: $(in_root dpkg-query -W -f='${Conffiles}' inbox-sla | tr -s ' ')"
in_root dpkg-query -W -f='${Conffiles}' inbox-sla | grep -q '^ /etc/inbox-sla/config.toml ' ||
  fail "/etc/inbox-sla/config.toml is not a conffile"
in_root inbox-sla --version
in_root man -w inbox-sla
in_root env MANWIDTH=80 LC_ALL=C.UTF-8 man inbox-sla 2>&1 | grep -A3 '^COMMANDS' ||
  fail "man inbox-sla shows no commands"
in_root bash -c 'source /usr/share/bash-completion/bash_completion; _completion_loader inbox-sla; complete -p inbox-sla' ||
  fail "bash-completion does not load the completions"
echo "after install: $(in_root systemctl is-enabled inbox-sla || true), $(in_root systemctl is-active inbox-sla || true)"

step "configure: a Wawp fake on loopback, the token as a credential, console and webhook channels"
in_root install -d -m 0700 /etc/inbox-sla/credentials
printf '%s' "$token" | in_root tee /etc/inbox-sla/credentials/support-token >/dev/null
printf '%s' "http://127.0.0.1:$port/hook" | in_root tee /etc/inbox-sla/credentials/oncall-url >/dev/null
in_root chmod 0600 /etc/inbox-sla/credentials/support-token /etc/inbox-sla/credentials/oncall-url
in_root mkdir -p /etc/systemd/system/inbox-sla.service.d
printf '[Service]\nLoadCredential=support-token:/etc/inbox-sla/credentials/support-token\nLoadCredential=oncall-url:/etc/inbox-sla/credentials/oncall-url\n' |
  in_root tee /etc/systemd/system/inbox-sla.service.d/credentials.conf
config() {
  cat <<EOF
[wawp]
base_url = "http://127.0.0.1:$port"
request_timeout = "5s"

[[instance]]
name = "support"
instance_id = "support-1"
access_token_file = "/run/credentials/inbox-sla.service/support-token"
$1
[sla]
threshold = "2h"
poll_interval = "2s"

[[channel]]
name = "journal"
type = "console"

[[channel]]
name = "oncall"
type = "webhook"
url_file = "/run/credentials/inbox-sla.service/oncall-url"

[http]
listen = "127.0.0.1:$http_port"
EOF
}
config "" | in_root tee /etc/inbox-sla/config.toml >/dev/null
in_root inbox-sla check --quiet && echo "inbox-sla check --quiet: clean (the credential is only the service's to read)"

step "systemctl enable --now inbox-sla"
in_root systemctl enable --now inbox-sla || fail "systemctl enable --now inbox-sla"
wait_for() { # SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what"
    sleep 0.5
  done
}
wait_for 60 "no escalation reached the webhook" grep -q '^hook firing support' "$work/fake.log"
wait_for 30 "/healthz did not answer 200" python3 -c \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$http_port/healthz', timeout=2)"
in_root systemctl status inbox-sla --no-pager --lines=0 | sed -n '1,12p'
main_pid=$(in_root systemctl show -p MainPID --value inbox-sla)
echo "webhook received: $(grep '^hook' "$work/fake.log" | head -n 1)"
echo "polls so far: $(grep -c '^poll support-1' "$work/fake.log")"
journal=$(in_root journalctl -u inbox-sla --no-pager -o cat)
grep -q 'waiting' <<<"$journal" || fail "no escalation in the journal (console channel)"
echo "--- the journal:"
in_root journalctl -u inbox-sla --no-pager -o short-precise | tail -n 25
echo "---"
in_root ls -la /var/lib/inbox-sla/
echo "the store belongs to the service's dynamic user: uid $(in_root stat -c %u /var/lib/private/inbox-sla/state.db)"

step "systemctl reload inbox-sla (a second instance added)"
config '
[[instance]]
name = "sales"
instance_id = "sales-1"
access_token_file = "/run/credentials/inbox-sla.service/support-token"
' | in_root tee /etc/inbox-sla/config.toml >/dev/null
in_root systemctl reload inbox-sla
wait_for 30 "the reloaded config's new instance was never polled" grep -q '^poll sales-1' "$work/fake.log"
wait_for 30 "the new instance's escalation did not reach the webhook" grep -q '^hook firing sales' "$work/fake.log"
[ "$(in_root systemctl show -p MainPID --value inbox-sla)" = "$main_pid" ] ||
  fail "reload restarted the daemon (MainPID changed)"
echo "reloaded in place (MainPID $main_pid); webhook: $(grep '^hook firing sales' "$work/fake.log" | head -n 1)"
in_root journalctl -u inbox-sla --no-pager -o short-precise | grep -i -A2 'reload' | tail -n 6

step "apt purge inbox-sla"
# Everything on the root's own filesystem before the purge, less what is not the package's.
snapshot() {
  in_root find / -xdev \( -path /proc -o -path /sys -o -path /run -o -path /tmp \
    -o -path /var/log -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg \
    -o -path /var/lib/systemd/timers -o -path /var/lib/systemd/catalog \
    -o -path /root \) -prune -o -print | sort
}
in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y inbox-sla 2>&1 |
  grep -v -e '^Reading' -e '^Building' -e 'Reading database' || fail "apt purge failed"
in_root systemctl daemon-reload
after=$(snapshot)
left=$(grep -E 'inbox-sla' <<<"$after" || true)
echo "left on disk with inbox-sla in the path:"
echo "${left:-  (nothing)}"
# What the administrator created stays (Debian policy: dpkg removes only what it knows):
# the credential and the drop-in. The unit, its enablement link and the store must not.
allowed='^(/etc/inbox-sla|/etc/inbox-sla/credentials|/etc/inbox-sla/credentials/(support-token|oncall-url)|/etc/systemd/system/inbox-sla\.service\.d|/etc/systemd/system/inbox-sla\.service\.d/credentials\.conf)$'
unexpected=$(grep -Ev "$allowed" <<<"$left" || true)
[ -z "$unexpected" ] || fail "purge left: $unexpected"
in_root dpkg -s inbox-sla >/dev/null 2>&1 && fail "dpkg still knows inbox-sla"
[ "$(in_root systemctl show -p LoadState --value inbox-sla)" = not-found ] ||
  fail "systemd still knows inbox-sla.service"
echo "purged: no binary, unit, enablement link, man page, completions, conffile or store left"

step "done"
in_root systemctl poweroff || true
wait "$nspawn_pid" 2>/dev/null || true
nspawn_pid=""
echo "package test passed in $((SECONDS - started))s"
