#!/usr/bin/env bash
# Starts and stops the local Docker engine (Debian's docker.io, dockerd 20.10) that
# edgefleet's device containers run in, with host networking only: no bridge, no
# iptables rules, no IP forwarding or masquerading. Containers must therefore run
# with `--network host` (or `none`).
#
# Only local images exist here: refer to them by ID (or run with `--pull never`),
# because a name with no local image makes the engine ask a public registry.
#
# Usage: hack/dockerd.sh start     start dockerd unless an engine already answers
#        hack/dockerd.sh stop      stop the dockerd this script started
#        hack/dockerd.sh status    exit 0 when an engine answers
#
# Environment:
#   EDGEFLEET_DOCKER_ROOT      data-root (default /var/lib/edgefleet-docker)
#   EDGEFLEET_DOCKER_STATE     pid and log files (default /run/edgefleet-docker)
#   EDGEFLEET_DOCKER_TIMEOUT   seconds to wait for the engine (default 60)
set -euo pipefail

log() { printf '[dockerd %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

data_root=${EDGEFLEET_DOCKER_ROOT:-/var/lib/edgefleet-docker}
state=${EDGEFLEET_DOCKER_STATE:-/run/edgefleet-docker}
timeout=${EDGEFLEET_DOCKER_TIMEOUT:-60}
pidfile=$state/edgefleet-dockerd.pid   # ours: the pid we started
engine_pidfile=$state/dockerd.pid      # dockerd's own (it refuses to start over a live one)
logfile=$state/dockerd.log
socket=/var/run/docker.sock
# Debian's own client matches the engine's API; the machine's newer client on PATH
# also negotiates down, but prefer the matching one when present.
docker_bin=/usr/bin/docker
[ -x "$docker_bin" ] || docker_bin=$(command -v docker || true)

engine_answers() {
  [ -n "$docker_bin" ] && DOCKER_HOST=unix://$socket "$docker_bin" version \
    --format '{{.Server.Version}}' >/dev/null 2>&1
}

our_pid() { # prints the pid of the dockerd we started, if it still runs
  [ -s "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
  echo "$pid"
}

# wait_for <what> <command...>: poll every 0.2 s until the command succeeds or the
# deadline; log <what> (if not empty) on success.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
  [ -z "$what" ] || log "$what"
}

start() {
  if engine_answers; then
    log "an engine already answers on $socket (version $(DOCKER_HOST=unix://$socket "$docker_bin" \
      version --format '{{.Server.Version}}'))"
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd not found; run hack/system-deps.sh first"
  [ "$(id -u)" -eq 0 ] || die "dockerd needs root"
  local started=$SECONDS pid
  if pid=$(our_pid); then
    log "dockerd (pid $pid) runs but does not answer yet"
  else
    mkdir -p "$state" "$data_root"
    log "starting dockerd (data-root $data_root, log $logfile)"
    # setsid: the engine outlives this shell and the caller's terminal.
    setsid dockerd \
      --data-root "$data_root" \
      --pidfile "$engine_pidfile" \
      --host "unix://$socket" \
      --bridge=none --iptables=false --ip6tables=false \
      --ip-forward=false --ip-masq=false \
      >>"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
  fi
  dead() { ! our_pid >/dev/null; }
  up_or_dead() { engine_answers || dead; }
  wait_for "" up_or_dead || die "dockerd did not answer within ${timeout}s; last log lines:
$(tail -n 30 "$logfile")"
  if ! engine_answers; then
    die "dockerd exited; last log lines:
$(tail -n 30 "$logfile")"
  fi
  log "engine $(DOCKER_HOST=unix://$socket "$docker_bin" version --format '{{.Server.Version}}')" \
    "answers on $socket (pid $(cat "$pidfile"), ready after $((SECONDS - started))s)"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    log "no dockerd started by this script is running"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  gone() { [ ! -d "/proc/$pid" ]; }
  if ! wait_for "dockerd stopped" gone; then
    log "dockerd ignored SIGTERM for ${timeout}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for "dockerd killed" gone || die "dockerd (pid $pid) survived SIGKILL"
  fi
  rm -f "$pidfile"
}

status() {
  if engine_answers; then
    log "engine answers on $socket (version $(DOCKER_HOST=unix://$socket "$docker_bin" \
      version --format '{{.Server.Version}}'))"
  else
    log "no engine answers on $socket"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
