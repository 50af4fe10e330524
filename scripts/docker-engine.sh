#!/usr/bin/env bash
# Installs (Debian, root) and starts the Docker engine without any bridge network, so that no container can
# ever get a private-range address. Safe to re-run: it does nothing when the engine already answers.
# Usage: scripts/docker-engine.sh start|stop
set -euo pipefail
state_dir="${AIRQUBE_STATE_DIR:-/run/airqube}"
mkdir -p "$state_dir"
pidfile="$state_dir/dockerd.pid"
config="$state_dir/daemon.json"

# gVisor (Debian's runsc), when installed, is registered as the runtime "runsc" for the gvisor tier: the ptrace
# platform (KVM does not work on these hosts), no network stack of its own, and the container's seccomp
# profile applied inside the sandbox as well (--oci-seccomp).
runtimes_json() {
  local runsc
  runsc=$(command -v runsc || true)
  if [ -n "$runsc" ]; then
    printf '{"runtimes":{"runsc":{"path":"%s","runtimeArgs":["--platform=ptrace","--network=none","--oci-seccomp"]}}}\n' "$runsc"
  else
    echo '{}'
  fi
}

# A running engine without the runsc runtime gets it by a configuration reload (SIGHUP: no container stops),
# when its configuration file is ours, or is the default one and does not exist yet.
register_runsc() {
  command -v runsc >/dev/null 2>&1 || return 0
  docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && return 0
  local pid file
  pid=$(cat "$state_dir/dockerd.real.pid" 2>/dev/null || pgrep -xo dockerd || true)
  [ -n "$pid" ] || return 0
  file=$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's/^--config-file=//p; /^--config-file$/{n;p}' | head -1)
  if [ "$file" = "$config" ] || { [ -z "$file" ] && [ ! -e /etc/docker/daemon.json ]; }; then
    file=${file:-/etc/docker/daemon.json}
    mkdir -p "$(dirname "$file")"
    runtimes_json >"$file"
    kill -HUP "$pid"
    for _ in $(seq 1 20); do
      docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && { echo "airqube: runsc registered"; return 0; }
      sleep 0.25
    done
  fi
  echo "airqube: could not register runsc with the running engine; add it to its daemon.json: $(runtimes_json)" >&2
}

start() {
  if docker info >/dev/null 2>&1; then
    echo "airqube: Docker engine already running"
    register_runsc
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
  runtimes_json >"$config"
  setsid nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --config-file "$config" --pidfile "$state_dir/dockerd.real.pid" >"$state_dir/dockerd.log" 2>&1 &
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
