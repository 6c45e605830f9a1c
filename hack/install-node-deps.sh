#!/usr/bin/env bash
# Installs, from Debian's packages, what the plait dev node and `make images` need besides the
# binaries hack/build-binaries.sh builds: containerd and runc (not crun: cgroups here may be a
# v1/v2 hybrid), the CNI plugins, iptables, and buildah with mmdebstrap for the images. Root only;
# does nothing when everything is there already. Nothing is started: `plait dev up --node` starts
# containerd itself, with its state under the node's directory.
set -euo pipefail

packages=(containerd runc containernetworking-plugins iptables iproute2 buildah mmdebstrap)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "error: ${missing[*]} are missing and installing them needs root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
