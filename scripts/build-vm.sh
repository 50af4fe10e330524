#!/usr/bin/env bash
# Builds the micro-VM tier's static init (images/build/vm-init) from src/sandbox/microvm/native/vm-init.c and
# the shared channel writer. Prefers musl (Debian's musl-tools: ~80 KB), falls back to glibc's gcc -static.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/images/build"
# The seccomp allowlist comes from the container tier's policy (src/sandbox/seccomp.ts): one policy, two tiers.
npx tsx "$root/scripts/vm-seccomp-header.ts" > "$root/images/build/vm-seccomp.h.tmp"
mv "$root/images/build/vm-seccomp.h.tmp" "$root/images/build/vm-seccomp.h"
cc=gcc
kernel_headers=()
if command -v musl-gcc >/dev/null 2>&1; then
  cc=musl-gcc
  # musl ships no kernel headers: expose only the system's linux/, asm/ and asm-generic/ (for the seccomp filter).
  kh="$root/images/build/kernel-headers"
  mkdir -p "$kh"
  ln -sfn /usr/include/linux "$kh/linux"
  ln -sfn /usr/include/asm-generic "$kh/asm-generic"
  ln -sfn "/usr/include/$(gcc -print-multiarch)/asm" "$kh/asm"
  kernel_headers=(-isystem "$kh")
fi
"$cc" -static -Os -Wall -Wextra -I "$root/images/build" "${kernel_headers[@]}" -o "$root/images/build/vm-init.tmp" \
  "$root/src/sandbox/microvm/native/vm-init.c" "$root/src/sandbox/native/channel.c"
mv "$root/images/build/vm-init.tmp" "$root/images/build/vm-init"
echo "built images/build/vm-init with $cc"
