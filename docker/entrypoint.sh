#!/bin/sh
# The container's entrypoint: `run` (the default) migrates the database first, then becomes the bridge;
# any other arguments are a msgr-bridge command (`accounts list`, `audit verify`, `config check`...).
set -eu
if [ "$#" -eq 0 ] || [ "$1" = "run" ]; then
    [ "$#" -gt 0 ] && shift
    msgr-bridge migrate
    exec msgr-bridge run "$@"
fi
exec msgr-bridge "$@"
