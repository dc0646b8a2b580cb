#!/usr/bin/env bash
# `npm run lab` / `npm run bench:failover`: the namespace lab on this machine, as root.
# Installs the Debian packages it needs (only when missing) and runs
# test/lab/main.ts, which bundles the agent, brings the lab up, proves the tunnels, runs the drills and tears
# everything down again, also on Ctrl-C or failure. Flags: see `run.sh --help`.
set -euo pipefail

cd "$(dirname "$0")/../.."

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  exec npx tsx test/lab/main.ts --help
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "lab: needs root (network namespaces, strongSwan); try: sudo npm run lab" >&2
  exit 1
fi

# Debian packages: strongSwan with userspace ESP (kernel-libipsec) and the network tools.
# No libstrongswan-extra-plugins: it pulls udev.
packages=(strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins
  iproute2 iputils-ping iptables tcpdump)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  echo "lab: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ ! -e /dev/net/tun ]]; then
  echo "lab: /dev/net/tun is missing; userspace ESP (kernel-libipsec) needs it" >&2
  exit 1
fi

# The lab bundles the agent and the state service itself (scripts/bundle.mjs, into its work dir)
# and runs that single file, as it is deployed.
# main.ts tears the lab down on exit and on SIGINT/SIGTERM (its sandbox's handlers); this trap
# only makes sure a Ctrl-C reaches it and the script reports the interruption.
child=
trap 'if [[ -n "$child" ]]; then kill -INT "$child" 2>/dev/null || true; wait "$child" || true; fi; echo "lab: interrupted" >&2; exit 130' INT TERM
node --import tsx test/lab/main.ts "$@" &
child=$!
wait "$child"
