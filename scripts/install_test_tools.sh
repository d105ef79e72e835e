#!/usr/bin/env bash
# Tools the multi-host test (test/integration/test_multi_host.py) needs: `ip netns` + veth
# (iproute2) and random packet loss (nftables; `tc netem` is not in every kernel). Run as root
# by .ci/run before the tests; without root or these tools that test skips and says why.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
    echo "install_test_tools: not root; the multi-host test will skip" >&2
    exit 0
fi
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
