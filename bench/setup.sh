#!/bin/sh
# What `make bench` installs before it runs: nginx with the Nchan module and wrk from Debian (only
# when missing), then the server and bench extras into the virtualenv (the suite runs the server
# itself, and `make bench` needs no `make run` first). Usage: bench/setup.sh .venv/bin
set -eu
BIN=${1:-.venv/bin}
missing=""
command -v nginx >/dev/null 2>&1 || missing="$missing nginx"
ls /usr/lib/nginx/modules/ngx_nchan_module.so >/dev/null 2>&1 || missing="$missing libnginx-mod-nchan"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bench: installing$missing from Debian" >&2
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
fi
"$BIN/pip" uninstall -q -y realtime >/dev/null 2>&1 || true  # the distribution's old name
"$BIN/pip" install -q -e '.[server,bench]'
