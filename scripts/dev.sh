#!/usr/bin/env bash
# Development entry points behind `make run` and `make test`. Idempotent: each step does nothing when its
# result is already there, so the same command works on a fresh machine and on a warm one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${MSGR_VENV:-$ROOT/.venv}
SYNAPSE_VENV=${MSGR_SYNAPSE_VENV:-$ROOT/.venv-synapse}
PY=$VENV/bin/python
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

pick_python() {
  # bottom 3 (IRC) needs Python >= 3.12; .python-version asks pyenv for 3.12.
  for cand in python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$cand"; return
    fi
  done
  echo "msgr-bridge needs Python >= 3.12 (install it, or use pyenv: 'pyenv install 3.12')" >&2; exit 1
}

setup() {
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    "$(pick_python)" -m venv "$VENV"
  fi
  local extras=${1:-}
  local stamp="$VENV/.msgr-installed$extras"
  local sum
  sum=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    log "installing msgr-bridge and its plugins (editable)"
    local args=(-e ".$extras")
    for p in plugins/*/; do args+=(-e "$p"); done
    "$PY" -m pip install -q --disable-pip-version-check "${args[@]}"
    echo "$sum" > "$stamp"
  fi
}

system_deps() {
  # Real servers the tests talk to (and wrk, bench/api.py's load generator; chromium for the web app's
  # browser test, driven by Playwright: never a downloaded browser). Installed from Debian packages
  # when missing (needs root or sudo).
  local want=() pkg bin
  # podman, buildah, debootstrap: tests/test_container.py builds the image and runs it (no Docker engine here);
  # chromium: tests/web/test_browser.py drives the web app in it.
  for pair in postgresql:initdb redis-server:redis-server prosody:prosody ngircd:ngircd nats-server:nats-server wrk:wrk \
      podman:podman buildah:buildah debootstrap:debootstrap chromium:chromium; do
    pkg=${pair%%:*}; bin=${pair##*:}
    if ! command -v "$bin" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$bin" >/dev/null 2>&1; then want+=("$pkg"); fi
  done
  if [ ${#want[@]} -gt 0 ]; then
    log "installing Debian packages: ${want[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" lua-unbound openssl >/dev/null
  fi
  if [ ! -x "$SYNAPSE_VENV/bin/python" ] || ! "$SYNAPSE_VENV/bin/python" -c 'import synapse' 2>/dev/null; then
    log "installing Synapse into $SYNAPSE_VENV (about a minute, once)"
    "$(pick_python)" -m venv "$SYNAPSE_VENV"
    "$SYNAPSE_VENV/bin/pip" install -q --disable-pip-version-check matrix-synapse
  fi
}

run_tests() {
  setup "[dev]"
  system_deps
  log "ruff"
  "$VENV/bin/ruff" check src plugins tests bench
  "$VENV/bin/ruff" format --check src plugins tests bench
  log "mypy"
  "$VENV/bin/mypy" src
  log "pytest"
  MSGR_SYNAPSE_VENV=$SYNAPSE_VENV "$VENV/bin/pytest" "$@"
}

run_bridge() {
  setup
  "$VENV/bin/msgr-bridge" migrate
  exec "$VENV/bin/msgr-bridge" run "$@"
}

case "${1:-}" in
  setup) shift; setup "${1:-[dev]}" ;;
  system-deps) system_deps ;;
  test) shift; run_tests "$@" ;;
  run) shift; run_bridge "$@" ;;
  *) echo "usage: scripts/dev.sh setup|system-deps|test|run" >&2; exit 64 ;;
esac
