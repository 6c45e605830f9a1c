#!/usr/bin/env bash
# Builds the control-plane binaries plait's tests and `plait dev` run: kube-apiserver,
# kube-controller-manager, kubectl and etcd (hack/kube) and helm (hack/helm), from the Go module
# proxy with the local Go toolchain. Static builds, cached by version outside the repository;
# a binary already in the cache is never rebuilt. Prints the cache directory on its last line.
#
#   hack/build-binaries.sh            build what is missing
#   PLAIT_CACHE_DIR=/path ...         cache somewhere else (default: ~/.cache/plait)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$here/versions.env"
cache="${PLAIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/plait}"
bin="$cache/bin/$PLAIT_BINARIES_TAG"

if ! command -v go >/dev/null 2>&1; then
  echo "error: the Go toolchain is not on PATH; plait builds its Kubernetes control plane from Go modules." >&2
  echo "       Install Go >= ${GO_MIN_VERSION} (https://go.dev/dl/) and run this again." >&2
  exit 1
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath -buildvcs=false"
# The go.sum files are committed; without a reachable checksum database they are what we trust.
if ! go env GOSUMDB | grep -q off && ! timeout 5 bash -c 'exec 3<>/dev/tcp/sum.golang.org/443' 2>/dev/null; then
  export GOSUMDB=off
  echo "note: sum.golang.org is unreachable; verifying modules against the committed go.sum only" >&2
fi

mkdir -p "$bin"
build() { # module-dir binary-name package
  local dir="$1" name="$2" pkg="$3"
  if [[ -x "$bin/$name" ]]; then return 0; fi
  echo "building $name from $pkg (cached in $bin)" >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -ldflags "-s -w $4" -o "$bin/.$name.tmp" "$pkg")
  mv "$bin/.$name.tmp" "$bin/$name"
  echo "built $name in $((SECONDS - start))s" >&2
}

kminor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
kver="-X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${kminor}"
build kube etcd go.etcd.io/etcd/server/v3 ""
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kver"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$kver"
build helm helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
echo "$bin"
