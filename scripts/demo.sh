#!/usr/bin/env bash
# The local demo stack, everything under ./var (make demo / make demo-down).
#
#   scripts/demo.sh up       start what is not running, migrate, make sure the
#                            tenant "demo" has a working admin key, print curls
#   scripts/demo.sh down     stop everything "up" started; var/ stays
#   scripts/demo.sh status   what is running
#
# Services (127.0.0.1 only):
#   PostgreSQL 54329  var/pg (db and role "nexus"; runs as the postgres user when
#                     started by root; if that user cannot reach var/, the
#                     data lives in /var/tmp/nexus-demo-<hash> and var/pg is
#                     a symlink to it)
#   Redis      63799  var/redis
#   mock LLM   18081  t/mock/server.js
#   nginx      18080  with build/ngx_nexus_module.so, config rendered from
#                     nginx.conf.example into var/nginx/nginx.conf
#   workers           build/nexus-notify (webhook notifications), its log
#                     in var/log/nexus-notify.log
#   receiver   18091  t/notify/receiver.js, a webhook receiver to point a
#                     destination at (secret "demo-secret")
#
# nginx.conf.example tokens replaced when rendering: __PG_PORT__,
# __REDIS_PORT__, __MOCK_PORT__, __NEXUS_PORT__, __PEPPER_FILE__,
# __AUDIT_KEY_FILE__, __SEAL_KEY_FILE__, __PREFIX__ (the absolute var/
# dir), __MODULE__
# (absolute path of the module).
# NEXUS_DEMO_CONF=<file> renders another template (development aid).
#
# "up" is safe to run again: each service starts only if its pid file does not
# name a live process of the right kind. var/pepper and var/audit.key are
# made once and kept;
# var/demo.env keeps its key as long as that key still works.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=$ROOT/var
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=54329
REDIS_PORT=63799
MOCK_PORT=18081
NEXUS_PORT=18080
RECEIVER_PORT=18091
TEMPLATE=${NEXUS_DEMO_CONF:-$ROOT/nginx.conf.example}
MODULE=$ROOT/build/ngx_nexus_module.so
NEXUSCTL=$ROOT/build/nexusctl
NGINX=/usr/sbin/nginx
PEPPER=$VAR/pepper
AUDIT_KEY=$VAR/audit.key
SEAL_KEY=$VAR/seal.key
NOTIFY=$ROOT/build/nexus-notify
DB_URL="postgresql://nexus@127.0.0.1:$PG_PORT/nexus"
URL="http://127.0.0.1:$NEXUS_PORT"
ENV_FILE=$VAR/demo.env

say() { echo "demo: $*"; }
die() { echo "demo: $*" >&2; exit 1; }

as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for WHAT SECONDS CMD...
wait_for() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "timed out after ${secs}s waiting for $what"
}

# alive PIDFILE PATTERN: the pid file names a live process whose command
# line matches PATTERN (guards against a stale file and a reused pid).
alive() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# --- PostgreSQL --------------------------------------------------------------

# The postgres user must be able to reach its data dir.
pg_home() {
    if [[ -e $VAR/pg || -L $VAR/pg ]]; then
        readlink -f "$VAR/pg"
        return
    fi
    if [[ $(id -u) -ne 0 ]] || as_postgres test -x "$VAR" 2>/dev/null; then
        mkdir -p "$VAR/pg"
    else
        local hash dir
        hash=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
        dir=/var/tmp/nexus-demo-$hash
        mkdir -p "$dir"
        ln -sfn "$dir" "$VAR/pg"
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$VAR/pg/"
    fi
    chmod 755 "$VAR/pg/"
    readlink -f "$VAR/pg"
}

pg_running() {
    local home
    home=$(readlink -f "$VAR/pg" 2>/dev/null) || return 1
    [[ -f $home/data/postmaster.pid ]] || return 1
    as_postgres "$PG_BIN/pg_ctl" -D "$home/data" status >/dev/null 2>&1
}

pg_up() {
    local home
    home=$(pg_home)
    if [[ ! -f $home/data/PG_VERSION ]]; then
        say "initializing PostgreSQL in $home"
        mkdir -p "$home/data" "$home/sock"
        chmod 700 "$home/data"
        [[ $(id -u) -eq 0 ]] && chown -R postgres:postgres "$home"
        as_postgres "$PG_BIN/initdb" -D "$home/data" -A trust -U postgres \
            -E UTF8 --locale=C >"$VAR/log/initdb.log" 2>&1 \
            || { cat "$VAR/log/initdb.log" >&2; die "initdb failed"; }
        cat >>"$home/data/postgresql.conf" <<EOF

# scripts/demo.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$home/sock'
max_connections = 200
EOF
    fi
    if pg_running; then
        say "PostgreSQL already running on $PG_PORT"
    else
        port_open "$PG_PORT" && die "port $PG_PORT is taken by another process"
        as_postgres "$PG_BIN/pg_ctl" -D "$home/data" -l "$home/postgres.log" \
            -w -t 60 start >/dev/null \
            || { tail -20 "$home/postgres.log" >&2; die "PostgreSQL did not start"; }
        say "PostgreSQL started on $PG_PORT"
    fi
    wait_for "PostgreSQL" 30 "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
    # the application role "nexus" (not a superuser) owns the database
    local su=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT"
        -U postgres -d postgres)
    if [[ -z $("${su[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'nexus'") ]]
    then
        "${su[@]}" -c 'CREATE ROLE nexus LOGIN' >/dev/null \
            || die "CREATE ROLE failed"
    fi
    if [[ -z $("${su[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'nexus'") ]]
    then
        "${su[@]}" -c 'CREATE DATABASE nexus OWNER nexus' >/dev/null \
            || die "CREATE DATABASE failed"
    fi
}

pg_down() {
    if pg_running; then
        as_postgres "$PG_BIN/pg_ctl" -D "$(readlink -f "$VAR/pg")/data" \
            -m fast -w -t 60 stop >/dev/null && say "PostgreSQL stopped"
    else
        say "PostgreSQL not running"
    fi
}

# --- Redis -------------------------------------------------------------------

redis_up() {
    if alive "$VAR/redis/redis.pid" redis-server; then
        say "Redis already running on $REDIS_PORT"
        return
    fi
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$VAR/redis" \
        --daemonize yes --pidfile "$VAR/redis/redis.pid" \
        --logfile "$VAR/log/redis.log" --save 60 1 --appendonly no \
        >/dev/null || die "redis-server failed (see var/log/redis.log)"
    wait_for "Redis" 10 redis-cli -p "$REDIS_PORT" ping
    say "Redis started on $REDIS_PORT"
}

redis_down() {
    if alive "$VAR/redis/redis.pid" redis-server; then
        local pid
        pid=$(cat "$VAR/redis/redis.pid")
        redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        say "Redis stopped"
    else
        say "Redis not running"
    fi
}

# --- mock --------------------------------------------------------------------

mock_up() {
    if alive "$VAR/mock.pid" server.js; then
        say "mock already running on $MOCK_PORT"
        return
    fi
    port_open "$MOCK_PORT" && die "port $MOCK_PORT is taken by another process"
    setsid node "$ROOT/t/mock/server.js" --port "$MOCK_PORT" --host 127.0.0.1 \
        >>"$VAR/log/mock.log" 2>&1 </dev/null &
    echo $! >"$VAR/mock.pid"
    wait_for "the mock" 10 port_open "$MOCK_PORT"
    say "mock started on $MOCK_PORT"
}

mock_down() {
    if alive "$VAR/mock.pid" server.js; then
        local pid
        pid=$(cat "$VAR/mock.pid")
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        say "mock stopped"
    else
        say "mock not running"
    fi
    rm -f "$VAR/mock.pid"
}

# --- nginx -------------------------------------------------------------------

# The pid file: the rendered config's pid directive, or var/nginx/nginx.pid
# (passed with -g).
nginx_pidfile() {
    local p=
    if [[ -f $VAR/nginx/nginx.conf ]]; then
        p=$(sed -n 's/^[[:space:]]*pid[[:space:]]\{1,\}\([^;]*\);.*/\1/p' \
            "$VAR/nginx/nginx.conf" | head -1)
    fi
    if [[ -z $p ]]; then
        echo "$VAR/nginx/nginx.pid"
    elif [[ $p == /* ]]; then
        echo "$p"
    else
        echo "$VAR/$p"
    fi
}

nginx_args() {
    local a=(-p "$VAR/" -c "$VAR/nginx/nginx.conf" -e "$VAR/log/nginx-error.log")
    if ! grep -q '^[[:space:]]*pid[[:space:]]' "$VAR/nginx/nginx.conf"; then
        a+=(-g "pid $VAR/nginx/nginx.pid;")
    fi
    printf '%s\n' "${a[@]}"
}

nginx_up() {
    if [[ -f $VAR/nginx/nginx.conf ]] \
        && alive "$(nginx_pidfile)" 'nginx: master'; then
        say "nginx already running on $NEXUS_PORT (down and up to restart it)"
        return 0
    fi
    if [[ ! -f $TEMPLATE ]]; then
        say "$TEMPLATE is missing: nginx not started"
        return 1
    fi
    if grep -q __MODULE__ "$TEMPLATE" && [[ ! -f $MODULE ]]; then
        say "build/ngx_nexus_module.so is not built (make): nginx not started"
        return 1
    fi
    port_open "$NEXUS_PORT" && die "port $NEXUS_PORT is taken by another process"
    PG_PORT=$PG_PORT REDIS_PORT=$REDIS_PORT MOCK_PORT=$MOCK_PORT \
    NEXUS_PORT=$NEXUS_PORT PEPPER=$PEPPER AUDIT_KEY=$AUDIT_KEY PREFIX=$VAR \
    MODULE=$MODULE SEAL_KEY=$SEAL_KEY \
        perl -pe 's/__PG_PORT__/$ENV{PG_PORT}/g;
                  s/__REDIS_PORT__/$ENV{REDIS_PORT}/g;
                  s/__MOCK_PORT__/$ENV{MOCK_PORT}/g;
                  s/__NEXUS_PORT__/$ENV{NEXUS_PORT}/g;
                  s/__PEPPER_FILE__/$ENV{PEPPER}/g;
                  s/__AUDIT_KEY_FILE__/$ENV{AUDIT_KEY}/g;
                  s/__SEAL_KEY_FILE__/$ENV{SEAL_KEY}/g;
                  s/__PREFIX__/$ENV{PREFIX}/g;
                  s/__MODULE__/$ENV{MODULE}/g;' \
        "$TEMPLATE" >"$VAR/nginx/nginx.conf.new" || die "rendering failed"
    mv "$VAR/nginx/nginx.conf.new" "$VAR/nginx/nginx.conf"
    local args
    mapfile -t args < <(nginx_args)
    if ! "$NGINX" -t -q "${args[@]}"; then
        die "nginx rejects var/nginx/nginx.conf (rendered from $TEMPLATE)"
    fi
    "$NGINX" "${args[@]}" || die "nginx did not start (see var/log/)"
    wait_for "nginx on $NEXUS_PORT" 10 port_open "$NEXUS_PORT"
    say "nginx started on $NEXUS_PORT"
}

nginx_down() {
    local pidf pid
    if [[ -f $VAR/nginx/nginx.conf ]]; then
        pidf=$(nginx_pidfile)
    else
        pidf=$VAR/nginx/nginx.pid
    fi
    if alive "$pidf" 'nginx: master'; then
        pid=$(cat "$pidf")
        kill -QUIT "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" "$pid" 2>/dev/null
            sleep 1
            kill -KILL -- "-$pid" "$pid" 2>/dev/null
        fi
        say "nginx stopped"
    else
        say "nginx not running"
    fi
}

nginx_running() {
    [[ -f $VAR/nginx/nginx.conf ]] && alive "$(nginx_pidfile)" 'nginx: master'
}

# --- workers -------------------------------------------------------------------

# nexus-notify, with the demo's database and Redis; 127.0.0.1 is
# allowlisted so that a destination can point at the local receiver.
notify_up() {
    if alive "$VAR/notify.pid" nexus-notify; then
        say "nexus-notify already running"
        return 0
    fi
    if [[ ! -x $NOTIFY ]]; then
        say "build/nexus-notify is not built (make): not started"
        return 1
    fi
    NEXUS_DATABASE_URL=$DB_URL \
    NEXUS_REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
    NEXUS_SEAL_KEY_FILE=$SEAL_KEY \
    NEXUS_CONSUMER=demo-notify \
    NEXUS_NOTIFY_ALLOW_CIDRS=127.0.0.1/32 \
        setsid "$NOTIFY" >>"$VAR/log/nexus-notify.log" 2>&1 </dev/null &
    echo $! >"$VAR/notify.pid"
    sleep 0.3
    alive "$VAR/notify.pid" nexus-notify \
        || die "nexus-notify did not start (see var/log/nexus-notify.log)"
    say "nexus-notify started"
}

notify_down() {
    if alive "$VAR/notify.pid" nexus-notify; then
        local pid
        pid=$(cat "$VAR/notify.pid")
        # SIGTERM: it finishes what is in flight (10 s at most), exits 0
        kill -TERM "$pid"
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        say "nexus-notify stopped"
    else
        say "nexus-notify not running"
    fi
    rm -f "$VAR/notify.pid"
}

receiver_up() {
    if alive "$VAR/receiver.pid" receiver.js; then
        say "webhook receiver already running on $RECEIVER_PORT"
        return
    fi
    port_open "$RECEIVER_PORT" && die "port $RECEIVER_PORT is taken by another process"
    setsid node "$ROOT/t/notify/receiver.js" --port "$RECEIVER_PORT" \
        --host 127.0.0.1 --secret demo-secret \
        >>"$VAR/log/receiver.log" 2>&1 </dev/null &
    echo $! >"$VAR/receiver.pid"
    wait_for "the webhook receiver" 10 port_open "$RECEIVER_PORT"
    say "webhook receiver started on $RECEIVER_PORT"
}

receiver_down() {
    if alive "$VAR/receiver.pid" receiver.js; then
        kill "$(cat "$VAR/receiver.pid")"
        say "webhook receiver stopped"
    else
        say "webhook receiver not running"
    fi
    rm -f "$VAR/receiver.pid"
}

# --- tenant and key ------------------------------------------------------------

sql() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DB_URL" -c "$1"
}

# key_works KEY: asks nginx (GET /v1/me) when it runs and answers 200 or
# 401; otherwise the database (the key's prefix is active, not expired,
# and its tenant is demo and active).
key_works() {
    local key=$1 code prefix
    [[ $key =~ ^nx_([0-9a-f]{12})_[0-9a-f]+$ ]] || return 1
    prefix=${BASH_REMATCH[1]}
    if nginx_running; then
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 \
            -H "Authorization: Bearer $key" "$URL/v1/me")
        [[ $code == 200 ]] && return 0
        [[ $code == 401 || $code == 403 ]] && return 1
    fi
    [[ $(sql "SELECT 1 FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
              WHERE k.prefix = '$prefix' AND k.status = 'active'
                AND k.role = 'admin'
                AND (k.expires_at IS NULL OR k.expires_at > now())
                AND t.name = 'demo' AND t.status = 'active'") == 1 ]]
}

tenant_and_key() {
    [[ -x $NEXUSCTL ]] || die "build/nexusctl is not built: run 'make'"
    export NEXUS_DATABASE_URL=$DB_URL NEXUS_KEY_PEPPER_FILE=$PEPPER
    "$NEXUSCTL" migrate --dir "$ROOT/migrations" >"$VAR/log/migrate.log" 2>&1 \
        || { cat "$VAR/log/migrate.log" >&2; die "nexusctl migrate failed"; }

    if [[ -z $(sql "SELECT 1 FROM tenants WHERE name = 'demo'") ]]; then
        "$NEXUSCTL" create-tenant --name demo --platform --allow-all-models >/dev/null \
            || die "nexusctl create-tenant failed"
        say "tenant demo created"
    elif [[ $(sql "SELECT allow_all_models FROM tenants WHERE name = 'demo'") != t ]]; then
        # a demo database from before model policies
        "$NEXUSCTL" set-models --tenant demo --allow-all >/dev/null \
            || die "nexusctl set-models failed"
    fi

    KEY=
    if [[ -f $ENV_FILE ]]; then
        KEY=$(sed -n 's/^NEXUS_API_KEY=//p' "$ENV_FILE" | head -1)
    fi
    if [[ -n $KEY ]] && key_works "$KEY"; then
        say "keeping the admin key in var/demo.env"
    else
        local out
        out=$("$NEXUSCTL" create-key --tenant demo --name demo-admin \
            --role admin) || die "nexusctl create-key failed"
        KEY=$(grep -oE 'nx_[0-9a-f]{12}_[0-9a-f]{64}' <<<"$out" | tail -1)
        [[ -n $KEY ]] || die "no key in the output of nexusctl create-key"
        say "new admin key for tenant demo"
    fi

    (
        umask 077
        cat >"$ENV_FILE" <<EOF
NEXUS_URL=$URL
NEXUS_API_KEY=$KEY
NEXUS_DATABASE_URL=$DB_URL
NEXUS_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
NEXUS_MOCK_URL=http://127.0.0.1:$MOCK_PORT
NEXUS_KEY_PEPPER_FILE=$PEPPER
NEXUS_AUDIT_KEY_FILE=$AUDIT_KEY
EOF
    )
}

print_curls() {
    cat <<EOF

Nexus demo is up. Environment: var/demo.env (set -a; . var/demo.env; set +a)

  curl -s $URL/healthz
  curl -s $URL/readyz
  curl -s -H 'Authorization: Bearer $KEY' $URL/v1/me
  curl -s -H 'Authorization: Bearer $KEY' $URL/v1/admin/tenants
  curl -s -H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json' \\
       -d '{"tenant":"demo","name":"ci","role":"reader"}' $URL/v1/admin/api-keys
  curl -s -H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json' \\
       -d '{"model":"mock-small","messages":[{"role":"user","content":"hello"}]}' \\
       $URL/mock/v1/chat/completions     # a location guarded by nexus_auth
  curl -s -H 'Authorization: Bearer $KEY' $URL/v1/models
  curl -sN -H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json' \\
       -d '{"model":"claude-small","stream":true,"messages":[{"role":"user","content":"hello"}]}' \\
       $URL/v1/chat/completions          # the gateway: Anthropic, as OpenAI SSE
  curl -s -i $URL/v1/me            # 401 without a key

Webhook notifications (nexus-notify delivers to the receiver on $RECEIVER_PORT):

  curl -s -H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json' \\
       -d '{"url":"http://127.0.0.1:$RECEIVER_PORT/hook","secret":"demo-secret"}' \\
       $URL/v1/admin/notifications/destinations
  curl -s -H 'Authorization: Bearer $KEY' -H 'Content-Type: application/json' \\
       -d '{"event_type":"demo.hello","severity":"info","data":{"hi":1}}' \\
       $URL/v1/admin/notifications/events
  curl -s http://127.0.0.1:$RECEIVER_PORT/__received
  curl -s -H 'Authorization: Bearer $KEY' $URL/v1/ops/notifications

Stop it with: make demo-down (data stays in var/)
EOF
}

# --- main ----------------------------------------------------------------------

up() {
    command -v redis-server >/dev/null && command -v node >/dev/null \
        && [[ -x $PG_BIN/initdb ]] || die "missing packages: run 'make deps'"
    mkdir -p "$VAR/log" "$VAR/nginx" "$VAR/redis"
    if [[ ! -s $PEPPER ]]; then
        (umask 077; openssl rand -hex 32 >"$PEPPER") || die "openssl failed"
        say "new pepper in var/pepper"
    fi
    if [[ ! -s $AUDIT_KEY ]]; then
        (umask 077; openssl rand -hex 32 >"$AUDIT_KEY") \
            || die "openssl failed"
        say "new audit key in var/audit.key"
    fi
    if [[ ! -s $SEAL_KEY ]]; then
        (umask 077; openssl rand -hex 32 >"$SEAL_KEY") || die "openssl failed"
        say "new seal key in var/seal.key"
    fi
    # nginx workers run as nobody:nogroup when nginx is started by root
    if [[ $(id -u) -eq 0 ]]; then
        chgrp nogroup "$PEPPER" "$AUDIT_KEY" "$SEAL_KEY" 2>/dev/null \
            && chmod 640 "$PEPPER" "$AUDIT_KEY" "$SEAL_KEY"
    fi
    pg_up
    redis_up
    mock_up
    local nginx_ok=1
    nginx_up || nginx_ok=0
    tenant_and_key
    # after the migrations: the worker prepares its statements on connect
    receiver_up
    notify_up || true
    print_curls
    if (( ! nginx_ok )); then
        echo
        say "nginx is not running yet (see above): the curls need it"
    fi
}

down() {
    notify_down
    receiver_down
    nginx_down
    mock_down
    redis_down
    pg_down
}

status() {
    nginx_running && say "nginx running on $NEXUS_PORT" || say "nginx stopped"
    alive "$VAR/notify.pid" nexus-notify && say "nexus-notify running" \
        || say "nexus-notify stopped"
    alive "$VAR/receiver.pid" receiver.js \
        && say "webhook receiver running on $RECEIVER_PORT" \
        || say "webhook receiver stopped"
    alive "$VAR/mock.pid" server.js && say "mock running on $MOCK_PORT" \
        || say "mock stopped"
    alive "$VAR/redis/redis.pid" redis-server \
        && say "Redis running on $REDIS_PORT" || say "Redis stopped"
    pg_running && say "PostgreSQL running on $PG_PORT" || say "PostgreSQL stopped"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: scripts/demo.sh up|down|status" >&2; exit 2 ;;
esac
