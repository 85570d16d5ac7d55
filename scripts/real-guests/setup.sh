#!/usr/bin/env bash
# Real guests for Samepage's real-host tests and `samepage capture` (docs/real-guests.md).
#
# Installs QEMU, a static busybox and cpio from Debian's packages, takes a real guest
# kernel (vmlinuz only) out of Debian's linux-image-amd64 without installing it on the
# host, and builds two busybox initramfs images whose contents differ, so that two
# guests booted from them are a "mixed pair".
#
# Everything it makes goes to one cache directory, reused when present:
#   ${SAMEPAGE_GUEST_CACHE:-/var/cache/samepage/real-guests}
#     vmlinuz             the guest kernel (from linux-image-<version>-amd64)
#     initramfs-a.cpio.gz busybox, /init; the image of "identical" guests
#     initramfs-b.cpio.gz as a, plus /data: 1 MiB of seeded pseudo-random bytes
#     manifest            versions and checksums; written last, so its presence means
#                         the cache is complete
#
# Without root, without apt-get, or off Linux/x86-64 it changes nothing, says why on
# stdout ("real guests: skipped: ..."), and exits 0: the tests that need guests skip
# on their own. Any other failure exits non-zero.
set -euo pipefail

CACHE="${SAMEPAGE_GUEST_CACHE:-/var/cache/samepage/real-guests}"
# Bump when what this script builds changes, so that an old cache is rebuilt.
FORMAT=2

skip() {
  echo "real guests: skipped: $*"
  exit 0
}

[ "$(uname -s)" = Linux ] || skip "not Linux ($(uname -s))"
[ "$(uname -m)" = x86_64 ] || skip "not x86-64 ($(uname -m))"

if [ -f "$CACHE/manifest" ] && grep -qx "format $FORMAT" "$CACHE/manifest" \
   && command -v qemu-system-x86_64 >/dev/null; then
  echo "real guests: cached in $CACHE ($(grep '^kernel ' "$CACHE/manifest"))"
  exit 0
fi

[ "$(id -u)" = 0 ] || skip "not root (uid $(id -u)): apt-get install needs root"
command -v apt-get >/dev/null || skip "no apt-get (not a Debian-like system)"

need_install=()
command -v qemu-system-x86_64 >/dev/null || need_install+=(qemu-system-x86)
# The guest needs the static busybox (the dynamic "busybox" package would not run in
# an initramfs without its libc); installing busybox-static replaces it.
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need_install+=(busybox-static)
command -v cpio >/dev/null || need_install+=(cpio)
if [ ${#need_install[@]} -gt 0 ]; then
  echo "real guests: installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
fi

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The guest kernel: linux-image-amd64 is a metapackage naming the real one.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
fi
[ -n "$kpkg" ] || { echo "real guests: linux-image-amd64 names no kernel package" >&2; exit 1; }
echo "real guests: downloading $kpkg (vmlinuz only; not installed)"
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg" >/dev/null)
deb=$(ls "$work"/*.deb)
kver=$(dpkg-deb -f "$deb" Version)
dpkg-deb -x "$deb" "$work/kernel"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -n1)
cp "$vmlinuz" "$work/vmlinuz"

# The initramfs images. /init mounts the pseudo-filesystems, says READY on the serial
# console (the harness waits for it) and gives a shell on the console.
build_initramfs() {
  local name=$1 root="$work/root-$1"
  mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
export PATH=/bin
echo "samepage guest $(cat /etc/samepage-image) ready: $(cat /proc/meminfo | head -n1)"
echo SAMEPAGE-READY
exec setsid cttyhack sh
INIT
  chmod 755 "$root/init"
  echo "$name" > "$root/etc/samepage-image"
  if [ "$name" = b ]; then
    # 1 MiB that only image b holds: its page cache differs from a's by this much.
    perl -e 'srand(12); print pack("L*", map { int(rand(4294967296)) } 1 .. 262144)' > "$root/data"
  fi
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --reproducible) | gzip -9 -n > "$work/initramfs-$name.cpio.gz"
}
build_initramfs a
build_initramfs b

qver=$(qemu-system-x86_64 --version | head -n1)
bver=$(dpkg-query -W -f '${Version}' busybox-static)
{
  echo "format $FORMAT"
  echo "kernel $kpkg $kver"
  echo "qemu $qver"
  echo "busybox-static $bver"
  (cd "$work" && sha256sum vmlinuz initramfs-a.cpio.gz initramfs-b.cpio.gz)
} > "$work/manifest"
mv "$work/vmlinuz" "$work/initramfs-a.cpio.gz" "$work/initramfs-b.cpio.gz" "$CACHE/"
mv "$work/manifest" "$CACHE/manifest"
echo "real guests: ready in $CACHE ($kpkg $kver, $qver)"
