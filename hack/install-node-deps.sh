#!/usr/bin/env bash
# Installs, from Debian's packages, what the plait dev node and `make images` need besides the
# binaries hack/build-binaries.sh builds: containerd and runc (not crun: cgroups here may be a
# v1/v2 hybrid), the CNI plugins, iptables, and buildah with mmdebstrap for the images. Root only;
# does nothing when everything is there already. Nothing is started: `plait dev up --node` starts
# containerd itself, with its state under the node's directory.
set -euo pipefail

exec "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" containerd runc containernetworking-plugins iptables iproute2 buildah mmdebstrap
