#!/usr/bin/env bash
# The main job shown by the README's first command: a demo qube in the hardened container sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node bin/airqube.js sandbox run --image airqube/busybox:latest --output "$out" --timeout 20s -- \
  sh -c 'echo "hello from a disposable qube: uid=$(id -u), caps=$(grep CapEff /proc/self/status | cut -f2)"; echo 42 > /output/answer.txt'
echo "output: $(cat "$out/output/answer.txt")"
