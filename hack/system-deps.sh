#!/usr/bin/env bash
# Installs the system services edgefleet's integration tests and local demo run,
# all from Debian's own packages (nothing else is reachable from CI):
#
#   docker.io          the Docker engine (dockerd 20.10), started by hack/dockerd.sh
#   docker-registry    the distribution server (OCI registry), started by
#                      edgefleet.testing.registry with TLS on 127.0.0.1
#   qemu-user-static   user-mode emulation, so arm64 and arm/v7 containers and
#   binfmt-support     mmdebstrap's foreign-architecture postinst scripts run here
#   mmdebstrap         builds the Debian base root filesystems (edgefleet.clients.rootfs)
#   arch-test          mmdebstrap's check that a foreign architecture can run here
#   uidmap             newuidmap/newgidmap (mmdebstrap's unshare mode, rootless engines)
#   iproute2           ip(8): network namespaces for multi-host tests
#   apache2-utils      htpasswd(1): bcrypt hashes for the registry's basic auth
#   lua5.1             runs the Argo CD health checks in tests (Argo CD embeds a Lua 5.1)
#   libfaketime        LD_PRELOAD clock shift: the agent's wrong-device-clock tests
#                      (tests/integration/test_agent_clock.py; Python and OpenSSL see it)
#   containernetworking-plugins, conntrack, runc, iptables, gcc
#                      the one-node cluster of the tests that run pods (CNI bridge,
#                      kube-proxy, the sandbox image's static pause binary)
#
# Idempotent: installs only what is missing, then makes sure binfmt_misc is
# mounted, the qemu entries are enabled with the F (fix-binary) flag (the kernel
# opens the interpreter at registration, so containers with their own root
# filesystem can use it), and proves it by running a tiny arm64 program.
#
# Usage: hack/system-deps.sh            (as root, or a user with sudo)
#        hack/system-deps.sh check      only check; exit 1 when something is missing
set -euo pipefail

log() { printf '[system-deps %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

packages=(docker.io docker-registry qemu-user-static binfmt-support mmdebstrap arch-test uidmap
          iproute2 apache2-utils lua5.1 containernetworking-plugins conntrack runc iptables gcc
          libc6-dev libfaketime)
mode=${1:-install}
case "$mode" in install|check) ;; *) die "unknown argument '$mode' (usage: $0 [check])" ;; esac

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root() { sudo -n "$@"; }
elif [ "$mode" = install ]; then
  die "run as root or as a user with password-less sudo (apt-get and mount need it)"
else
  as_root() { "$@"; }
fi

installed() { # <package>: true when dpkg has it fully installed
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# --- 1. packages --------------------------------------------------------------
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  log "packages: all present (${packages[*]})"
elif [ "$mode" = check ]; then
  die "missing packages: ${missing[*]} (run hack/system-deps.sh as root to install them)"
else
  log "installing: ${missing[*]}"
  start=$SECONDS
  # Package scripts must not start services (no init system here; dockerd is
  # started by hack/dockerd.sh with our flags, the registry by the tests).
  # Debian's container images ship a policy-rc.d that says so; add one for the
  # duration of the install where it is absent.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    || die "apt-get update failed; is the Debian mirror in /etc/apt/sources.list.d reachable?"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed (see the apt output above)"
  if [ $added_policy = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  for p in "${missing[@]}"; do installed "$p" || die "package $p did not install"; done
  log "installed ${#missing[@]} package(s) in $((SECONDS - start))s"
fi

# --- 2. binfmt_misc -------------------------------------------------------------
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/status" ]; then
  [ "$mode" = check ] && die "binfmt_misc is not mounted at $binfmt"
  log "mounting binfmt_misc at $binfmt"
  as_root mount -t binfmt_misc binfmt_misc "$binfmt" \
    || die "cannot mount binfmt_misc (the kernel needs CONFIG_BINFMT_MISC; in a container, run it privileged)"
fi
[ "$(cat "$binfmt/status")" = enabled ] || {
  [ "$mode" = check ] && die "binfmt_misc is disabled"
  echo 1 | as_root tee "$binfmt/status" >/dev/null
}

for arch in aarch64 arm; do
  entry="$binfmt/qemu-$arch"
  if [ ! -e "$entry" ] || ! grep -qx enabled "$entry"; then
    [ "$mode" = check ] && die "binfmt entry qemu-$arch is not registered/enabled"
    log "enabling binfmt entry qemu-$arch"
    as_root update-binfmts --enable "qemu-$arch" \
      || die "update-binfmts --enable qemu-$arch failed (is qemu-user-static installed?)"
  fi
  [ -e "$entry" ] || die "binfmt entry qemu-$arch missing after update-binfmts --enable"
  grep -qx enabled "$entry" || die "binfmt entry qemu-$arch is registered but disabled"
  flags=$(sed -n 's/^flags: //p' "$entry")
  case "$flags" in
    *F*) ;;
    *) die "binfmt entry qemu-$arch has flags '$flags' without F (fix-binary): containers could not find the interpreter; re-register it with update-binfmts --fix-binary yes" ;;
  esac
  log "binfmt qemu-$arch: enabled, interpreter $(sed -n 's/^interpreter //p' "$entry"), flags $flags"
done

# --- 3. proof: a real arm64 program runs ---------------------------------------
# A 161-byte static AArch64 ELF (hand-assembled; no cross toolchain needed):
#   mov x0,#1; adr x1,msg; mov x2,#9; mov x8,#64; svc #0   (write(1, "arm64-ok\n", 9))
#   mov x0,#0; mov x8,#93; svc #0                          (exit(0))
elf_hex=\
7f454c460201010000000000000000000200b700010000007800400000000000400000000000000000\
0000000000000000000000400038000100400000000000010000000500000000000000000000000000\
4000000000000000400000000000a100000000000000a1000000000000000010000000000000200080\
d2e1000010220180d2080880d2010000d4000080d2a80b80d2010000d461726d36342d6f6b0a
probe=$(mktemp /tmp/edgefleet-arm64-probe.XXXXXX)
trap 'rm -f "$probe"' EXIT
# shellcheck disable=SC2059  # the format is the byte string itself
printf "$(printf '%s' "$elf_hex" | sed 's/../\\x&/g')" >"$probe"
chmod +x "$probe"
out=$("$probe" 2>&1) || die "an arm64 program failed to run through binfmt/qemu: $out"
[ "$out" = arm64-ok ] || die "the arm64 probe printed '$out' instead of 'arm64-ok'"
log "arm64 program ran through binfmt_misc ($(qemu-aarch64-static --version | head -1))"
log "ready"
