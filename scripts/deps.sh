#!/usr/bin/env bash
# Installs the Debian packages Nexus needs. Idempotent: when everything is
# present it only asks dpkg, which takes well under a second.
set -euo pipefail

pkgs=(
    build-essential pkg-config clang
    nginx-core nginx-dev
    postgresql postgresql-client libpq-dev
    redis-server libhiredis-dev
    libyajl-dev libssl-dev libcurl4-openssl-dev libjemalloc-dev
    libpcre2-dev libpcre3-dev zlib1g-dev
    libcmocka-dev tzdata
    perl
    nodejs
    curl wrk
)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
        | grep -q 'install ok installed'
    then
        missing+=("$p")
    fi
done

# nodejs may come from another packaging of the same binary
if [[ " ${missing[*]-} " == *" nodejs "* ]] && command -v node >/dev/null; then
    missing=("${missing[@]/nodejs}")
fi

want=()
for p in "${missing[@]-}"; do [[ -n "$p" ]] && want+=("$p"); done

if (( ${#want[@]} == 0 )); then
    exit 0
fi

echo "deps: installing ${want[*]}"
if [[ $(id -u) -ne 0 ]]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null

# Debian starts the packaged services on install; Nexus runs its own
# instances under ./var and a temp dir, so stop the system ones when this
# script was the one that installed them.
for svc in nginx redis-server postgresql; do
    if [[ " ${want[*]} " == *" ${svc%%-server} "* ]] \
        || [[ " ${want[*]} " == *" $svc "* ]]; then
        $SUDO service "$svc" stop >/dev/null 2>&1 || true
    fi
done
exit 0
