#!/bin/sh
# Builds Berth's built-in test root filesystem from Debian's busybox-static.
#   make-rootfs.sh <dir> <probe-binary>
# Layout as in the Docker busybox image: /bin holds busybox and one symlink per applet;
# /etc with passwd, group, hostname, hosts and an empty resolv.conf; /tmp (1777), /root,
# /home/user (uid 1000), empty /proc /sys /dev; and /probe, the static probe.
# Deterministic (fixed modes, owners and timestamps) and idempotent: it builds into a
# temporary directory beside <dir> and renames it into place.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: make-rootfs.sh <dir> <probe-binary>" >&2
  exit 2
fi
dest=$1
probe=$2
busybox=${BUSYBOX:-/bin/busybox}

[ -x "$busybox" ] || { echo "make-rootfs: $busybox not found (install busybox-static)" >&2; exit 1; }
[ -f "$probe" ] || { echo "make-rootfs: probe binary $probe not found" >&2; exit 1; }
bb_real=$(readlink -f "$busybox")

parent=$(dirname "$dest")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.rootfs-build.XXXXXX")
old=""
cleanup() {
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
  if [ -n "$old" ]; then rm -rf "$old"; fi
}
trap cleanup EXIT INT TERM

r=$tmp
mkdir -p "$r/bin" "$r/etc" "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/root" "$r/home/user" \
  "$r/usr/sbin" "$r/var/spool/mail" "$r/var/www"
cp "$bb_real" "$r/bin/busybox"
chmod 0755 "$r/bin/busybox"
for applet in $("$busybox" --list | LC_ALL=C sort); do
  case "$applet" in
    busybox|*/*|"") continue ;;
  esac
  ln -s busybox "$r/bin/$applet"
done

cp "$probe" "$r/probe"
chmod 0755 "$r/probe"

cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
wheel:x:10:root
user:x:1000:
nogroup:x:65533:
nobody:x:65534:
EOF
cat >"$r/etc/shadow" <<'EOF'
root:*::0:::::
daemon:*::0:::::
user:*::0:::::
nobody:*::0:::::
EOF
echo "berth" >"$r/etc/hostname"
cat >"$r/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
: >"$r/etc/resolv.conf"

chown -R 0:0 "$r"
chown 1000:1000 "$r/home/user"
find "$r" -type d -exec chmod 0755 {} +
chmod 0700 "$r/root"
chmod 1777 "$r/tmp"
chmod 0644 "$r/etc/passwd" "$r/etc/group" "$r/etc/hostname" "$r/etc/hosts" "$r/etc/resolv.conf"
chmod 0640 "$r/etc/shadow"
# A fixed timestamp on everything, symlinks included, so two builds are identical.
find "$r" -exec touch -h -d '2000-01-01 00:00:00 UTC' {} +

if [ -e "$dest" ]; then
  old="$parent/.rootfs-old.$$"
  mv "$dest" "$old"
fi
mv "$tmp" "$dest"
tmp=""
