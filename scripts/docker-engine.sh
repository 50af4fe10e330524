#!/usr/bin/env bash
# Installs (Debian, root) and starts the Docker engine without any bridge network, so that no container can
# ever get a private-range address. Safe to re-run: it does nothing when the engine already answers.
# Usage: scripts/docker-engine.sh start|stop
set -euo pipefail
state_dir="${AIRQUBE_STATE_DIR:-/run/airqube}"
mkdir -p "$state_dir"
pidfile="$state_dir/dockerd.pid"

start() {
  if docker info >/dev/null 2>&1; then
    echo "airqube: Docker engine already running"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "airqube: installing the Docker engine (docker.io from Debian)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    else
      echo "airqube: no Docker engine. Install one (Debian: 'sudo apt-get install docker.io') and start it with" >&2
      echo "  dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false" >&2
      exit 1
    fi
  fi
  echo "airqube: starting dockerd (no bridge, no iptables)"
  setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --pidfile "$state_dir/dockerd.real.pid" >"$state_dir/dockerd.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then echo "airqube: Docker engine ready"; return 0; fi
    sleep 0.5
  done
  echo "airqube: dockerd did not answer within 30 s; see $state_dir/dockerd.log" >&2
  tail -20 "$state_dir/dockerd.log" >&2 || true
  exit 1
}

stop() {
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    # dockerd's own pid file names the engine even when setsid had to fork to start it
    if [ -s "$state_dir/dockerd.real.pid" ]; then pid=$(cat "$state_dir/dockerd.real.pid"); fi
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$pidfile"
    echo "airqube: Docker engine stopped"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
