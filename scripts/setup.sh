#!/bin/sh
# Idempotent set-up for a fresh Debian 12 machine, run as root: Debian packages,
# npm dependencies and the build. Both README commands and .ci/run start here.
set -eu
cd "$(dirname "$0")/.."

# Needed to build and run: libseccomp (static, for the executor), busybox-static (built-in rootfs).
# Needed by the tests: the runtimes and tools Berth is checked against.
PKGS="gcc make libseccomp-dev busybox-static runc crun containerd podman skopeo umoci \
docker-registry containernetworking-plugins iptables nftables iproute2 python3-docker docker-compose \
apache2-utils openssl docker.io"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as docker.io and containerd would start their daemons on install: they are
  # only tools here (tests start what they need on their own paths), so no service starts.
  policy_rc_d=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_rc_d=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -n "$policy_rc_d" ] && rm -f /usr/sbin/policy-rc.d
fi

if [ ! -d node_modules/typescript ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

make -s -C native
npx tsc -b
# The containerd API protos berth-containerd serves, from the reference specs beside the repo.
node packages/supervisor/scripts/copy-protos.js
# berth-runc starts on every container operation: one bundled file loads about twice as fast.
npx esbuild packages/runtime/dist/cli/main.js --bundle --platform=node --format=esm --target=node20 \
  --outfile=packages/runtime/dist/cli/berth-runc.bundle.js --log-level=warning
# berth, the client, starts on every command: bundled too (cp loads @berth/images on demand).
npx esbuild packages/cli/dist/main.js --bundle --platform=node --format=esm --target=node20 --external:@berth/images \
  --outfile=packages/cli/dist/berth.bundle.js --log-level=warning
