#!/usr/bin/env bash
# Tryton for Billable's ERP integration tests and `make demo ERP=tryton` (docs/manual/erp-mapping.md).
#
#   ops/tryton/setup.sh          install Tryton (pinned, ops/tryton/requirements.txt) into .tryton-venv and
#                                build the template database once; prints the env file it wrote
#   ops/tryton/setup.sh start    the same, then create the database TRYTON_DATABASE (billable_tryton_demo)
#                                from the template when missing (TRYTON_FRESH=1: anew) and start trytond serving it on a free local port (or
#                                TRYTON_PORT) in the background; its URL, database and pid go to var/tryton/env
#   ops/tryton/setup.sh stop     stop the trytond that `start` started
#
# The template database's name carries a hash of the pinned requirements and the set-up script, so a
# template built by an earlier run with the same versions is reused (a second run takes about a second);
# a changed pin or set-up builds a new one. Tests clone it per session: CREATE DATABASE ... TEMPLATE.
# Environment: TRYTON_VENV (.tryton-venv), TRYTON_DB_URI (postgresql://postgres@127.0.0.1:5432/),
# TRYTON_PORT (start: a free port when unset), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=ops/tryton
venv="${TRYTON_VENV:-.tryton-venv}"
uri="${TRYTON_DB_URI:-postgresql://postgres@127.0.0.1:5432/}"
var=var/tryton
mkdir -p "$var"
note() { printf 'tryton: %s\n' "$*" >&2; }

stamp_of() { cat "$here/requirements.txt" "$here/init_template.py" | sha256sum | cut -c1-10; }
stamp="$(stamp_of)"
template="billable_tryton_tpl_${stamp}"

if [[ "${1:-}" == stop ]]; then
  if [[ -f "$var/trytond.pid" ]] && kill -0 "$(cat "$var/trytond.pid")" 2>/dev/null; then
    kill "$(cat "$var/trytond.pid")" && note "trytond stopped"
  fi
  rm -f "$var/trytond.pid"
  exit 0
fi

# 1. The virtualenv (re-installed when the pins change).
if [[ ! -f "$venv/.installed-$stamp" ]]; then
  note "installing Tryton into $venv ($(grep -c '==' "$here/requirements.txt") pinned packages)"
  [[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
  # (this machine's pip configuration names local indexes that may not exist: drop that noise only)
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  rm -f "$venv"/.installed-*
  touch "$venv/.installed-$stamp"
fi

# 2. The configuration (sessions time out after an hour of inactivity: the adapter logs in again).
cat > "$var/trytond.conf" <<CONF
[database]
uri = ${uri}
path = $(pwd)/$var/filestore
[session]
timeout = ${TRYTON_SESSION_TIMEOUT:-3600}
[web]
listen = 127.0.0.1:${TRYTON_PORT:-8000}
CONF
admin_password="${TRYTON_ADMIN_PASSWORD:-admin}"
printf '%s\n' "$admin_password" > "$var/admin-password"

# 3. The databases: a base (modules activated by trytond-admin, ~90 s, per pinned versions) and the
# template cloned from it and set up by init_template.py (a few seconds). Each is renamed into place only
# when complete, so a half-built one is never cloned.
psql_() { psql "${uri%/}/postgres" -v ON_ERROR_STOP=1 -qtAc "$1"; }
exists() { [[ "$(psql_ "SELECT 1 FROM pg_database WHERE datname = '$1'")" == 1 ]]; }
base="billable_tryton_base_$(sha256sum "$here/requirements.txt" | cut -c1-10)"
if ! exists "$template"; then
  if ! exists "$base"; then
    note "activating the Tryton modules in $base (about 90 s, once per pinned versions)"
    psql_ "DROP DATABASE IF EXISTS \"${base}_building\" WITH (FORCE)"
    psql_ "CREATE DATABASE \"${base}_building\" ENCODING 'UTF8' TEMPLATE template0"
    TRYTONPASSFILE="$var/admin-password" "$venv/bin/trytond-admin" -c "$var/trytond.conf" -d "${base}_building" \
      --email admin@billable.example -u account_invoice --activate-dependencies 2>&1 | tail -n 3 >&2
    psql_ "ALTER DATABASE \"${base}_building\" RENAME TO \"$base\""
  fi
  note "building template database $template"
  building="${template}_building"
  psql_ "DROP DATABASE IF EXISTS \"$building\" WITH (FORCE)"
  psql_ "CREATE DATABASE \"$building\" TEMPLATE \"$base\""
  "$venv/bin/python" "$here/init_template.py" "$var/trytond.conf" "$building" >&2
  psql_ "ALTER DATABASE \"$building\" RENAME TO \"$template\""
  # Templates and bases of other versions are dropped.
  for old in $(psql_ "SELECT datname FROM pg_database WHERE (datname LIKE 'billable\\_tryton\\_tpl\\_%' AND datname <> '$template') OR (datname LIKE 'billable\\_tryton\\_base\\_%' AND datname <> '$base')"); do
    psql_ "DROP DATABASE IF EXISTS \"$old\" WITH (FORCE)" || true
  done
else
  note "template database $template is up to date"
fi

{
  echo "TRYTON_VENV=$(cd "$venv" && pwd)"
  echo "TRYTON_CONF=$(pwd)/$var/trytond.conf"
  echo "TRYTON_TEMPLATE_DB=$template"
  echo "TRYTON_DB_URI=$uri"
  echo "TRYTON_USER=admin"
  echo "TRYTON_PASSWORD=$admin_password"
} > "$var/env"

if [[ "${1:-}" == start ]]; then
  port="${TRYTON_PORT:-$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
  sed -i "s/^listen = .*/listen = 127.0.0.1:$port/" "$var/trytond.conf"
  "$0" stop >/dev/null 2>&1 || true
  database="${TRYTON_DATABASE:-billable_tryton_demo}"
  if [[ "${TRYTON_FRESH:-}" == 1 ]]; then psql_ "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)"; fi
  # Kept between runs, like the demo's own database (TRYTON_FRESH=1 starts it afresh from the template).
  exists "$database" || psql_ "CREATE DATABASE \"$database\" TEMPLATE \"$template\""
  nohup "$venv/bin/trytond" -c "$var/trytond.conf" -d "$database" > "$var/trytond.log" 2>&1 &
  echo $! > "$var/trytond.pid"
  for _ in $(seq 1 60); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break  # any answer: trytond is listening
    sleep 0.5
  done
  echo "TRYTON_URL=http://127.0.0.1:$port" >> "$var/env"
  echo "TRYTON_DATABASE=$database" >> "$var/env"
  note "trytond listening on http://127.0.0.1:$port (pid $(cat "$var/trytond.pid"), log $var/trytond.log)"
fi
echo "$var/env"
