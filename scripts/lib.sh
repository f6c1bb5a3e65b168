# Shared helpers of scripts/test and scripts/devnet: idempotent installation of what Berth
# needs on a Debian/Ubuntu machine with Rust, Node and root (or sudo).
# shellcheck shell=bash

BERTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BERTH_ROOT
export PATH="$BERTH_ROOT/node_modules/.bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages that are not installed yet (one apt-get update per run at most).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [[ -z "${BERTH_APT_UPDATED:-}" ]]; then
    as_root apt-get update -qq
    BERTH_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# `npm ci`, skipped when node_modules already matches package-lock.json.
ensure_node_modules() {
  command -v node >/dev/null || die "node is required (Node.js 18 or newer)"
  command -v npm >/dev/null || die "npm is required"
  local stamp="$BERTH_ROOT/node_modules/.berth-lock-sha256"
  local want
  want="$(sha256sum "$BERTH_ROOT/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  log "npm ci (Foundry binaries, solcjs, OpenZeppelin)"
  (cd "$BERTH_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

# rustfmt and clippy for the lint steps.
ensure_rust_components() {
  command -v cargo >/dev/null || die "cargo is required (install Rust with rustup)"
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "rustfmt and clippy are required"
    log "rustup component add rustfmt clippy"
    rustup component add rustfmt clippy
  fi
}

# A Foundry tool from the pinned npm package (a symlink to the native binary).
foundry_bin() {
  local bin="$BERTH_ROOT/node_modules/.bin/$1"
  [[ -x "$bin" ]] || die "no $1 under node_modules/.bin: run npm ci"
  echo "$bin"
}

# A Postgres the tests can create databases in; exports DATABASE_URL. Uses $DATABASE_URL or
# the local server when reachable, else installs and starts Debian's PostgreSQL.
ensure_postgres() {
  command -v psql >/dev/null || ensure_apt postgresql-client
  local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    export DATABASE_URL="$url"
    return 0
  fi
  [[ -n "${DATABASE_URL:-}" ]] && die "DATABASE_URL=$DATABASE_URL does not answer"
  ensure_apt postgresql
  local version
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  [[ -n "$version" ]] || die "postgresql installed but no cluster under /etc/postgresql"
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  for _ in $(seq 1 50); do
    as_root su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # A password lets the tests connect over TCP under Debian's default scram authentication.
  as_root su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'berth'\"" >/dev/null
  url="postgres://postgres:berth@127.0.0.1:5432/postgres"
  psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL does not answer on 127.0.0.1:5432"
  export DATABASE_URL="$url"
}

# podman with runc (the keeper's podman engine) and Debian's static busybox (the example image),
# configured by the project's containers.conf through CONTAINERS_CONF, never /etc.
ensure_podman() {
  # Listed in full: ensure_apt skips recommends, and kube play needs catatonit (the infra
  # container), netavark and iptables (published ports).
  ensure_apt podman runc conmon catatonit netavark aardvark-dns iptables busybox-static
  export CONTAINERS_CONF="$BERTH_ROOT/keepers/podman/containers.conf"
  local err
  if ! err="$(podman info 2>&1 >/dev/null)"; then
    # The lock segment was made for another num_locks (an earlier containers.conf): podman
    # cannot open it, and renumbering needs it gone first. Only when no container runs.
    if [[ "$err" == *"locks in /libpod_lock"* ]] && ! pgrep -x conmon >/dev/null; then
      log "podman's lock count changed (containers.conf num_locks): renumbering its locks"
      rm -f /dev/shm/libpod_lock
      podman system renumber
    fi
    podman info >/dev/null 2>&1 || die "podman is installed but does not work: run 'podman info'"
  fi
}

# Postgres for the devnet; exports DATABASE_URL. $DATABASE_URL or the local server when one
# answers (unless BERTH_DEVNET_LOCAL_PG=1), else a project-local cluster in $1 (initdb once)
# on port ${BERTH_DEVNET_PG_PORT:-55432}, started now; stop it with stop_local_postgres.
LOCAL_PG_DIR=""
ensure_devnet_postgres() {
  local dir="$1"
  command -v psql >/dev/null || ensure_apt postgresql-client
  local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if [[ "${BERTH_DEVNET_LOCAL_PG:-0}" != 1 ]] && psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    export DATABASE_URL="$url"
    return 0
  fi
  [[ -n "${DATABASE_URL:-}" && "${BERTH_DEVNET_LOCAL_PG:-0}" != 1 ]] && die "DATABASE_URL=$DATABASE_URL does not answer"
  ensure_apt postgresql
  local bin port="${BERTH_DEVNET_PG_PORT:-55432}"
  bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)"
  [[ -x "$bin/initdb" ]] || die "no initdb under /usr/lib/postgresql"
  # The server refuses to run as root: as root, the cluster belongs to Debian's postgres user.
  local as=()
  [[ $(id -u) -eq 0 ]] && as=(runuser -u postgres --)
  mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$dir" && chmod 0700 "$dir"
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    log "creating a project-local PostgreSQL cluster in $dir"
    "${as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  fi
  if ! "${as[@]}" "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    log "starting the project-local PostgreSQL on 127.0.0.1:$port"
    "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null \
      || die "PostgreSQL did not start (see $dir/server.log)"
  fi
  LOCAL_PG_DIR="$dir"
  LOCAL_PG_AS=("${as[@]}")
  LOCAL_PG_BIN="$bin"
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# Stops the cluster ensure_devnet_postgres started, if it started one.
stop_local_postgres() {
  [[ -n "$LOCAL_PG_DIR" ]] || return 0
  "${LOCAL_PG_AS[@]}" "$LOCAL_PG_BIN/pg_ctl" -D "$LOCAL_PG_DIR" -m fast -w stop >/dev/null 2>&1 || true
}

# A devnet certificate authority and a wildcard certificate for `*.$2` in directory $1 (made
# once; the CA is kept so a browser that trusts $1/ca.pem keeps trusting the devnet).
ensure_devnet_tls() {
  local dir="$1" domain="$2"
  command -v openssl >/dev/null || ensure_apt openssl
  mkdir -p "$dir"
  if [[ ! -s "$dir/ca.pem" || ! -s "$dir/ca.key" ]]; then
    log "creating the devnet CA ($dir/ca.pem)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=Berth devnet CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    rm -f "$dir/apps.crt"
  fi
  if [[ ! -s "$dir/apps.crt" ]] || ! openssl x509 -checkend 86400 -noout -in "$dir/apps.crt" >/dev/null 2>&1 \
    || ! openssl x509 -noout -ext subjectAltName -in "$dir/apps.crt" 2>/dev/null | grep -q "DNS:\*\.$domain"; then
    log "issuing the devnet certificate for *.$domain"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=*.$domain" \
      -keyout "$dir/apps.key" -out "$dir/apps.csr" 2>/dev/null
    openssl x509 -req -in "$dir/apps.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 90 -out "$dir/apps.crt" -extfile <(printf 'subjectAltName=DNS:*.%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$domain") 2>/dev/null
    rm -f "$dir/apps.csr"
  fi
}
