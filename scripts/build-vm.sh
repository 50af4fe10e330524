#!/usr/bin/env bash
# Builds the micro-VM tier's static init (images/build/vm-init) from src/sandbox/microvm/native/vm-init.c and
# the shared channel writer. Prefers musl (Debian's musl-tools: ~80 KB), falls back to glibc's gcc -static.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/images/build"
cc=gcc
if command -v musl-gcc >/dev/null 2>&1; then cc=musl-gcc; fi
"$cc" -static -Os -Wall -Wextra -o "$root/images/build/vm-init.tmp" \
  "$root/src/sandbox/microvm/native/vm-init.c" "$root/src/sandbox/native/channel.c"
mv "$root/images/build/vm-init.tmp" "$root/images/build/vm-init"
echo "built images/build/vm-init with $cc"
