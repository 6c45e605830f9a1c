#!/usr/bin/env bash
# Builds the binaries plait's tests and `plait dev` run, from the Go module proxy with the local Go
# toolchain: the control plane (kube-apiserver, kube-controller-manager, kubectl, etcd: hack/kube;
# helm: hack/helm), the node (kubelet, kube-scheduler, kube-proxy: hack/kube; the pause binary:
# hack/pause), Prometheus with promtool (hack/prometheus), versitygw, the S3-compatible server the
# payload store's tests run (hack/s3), and Jaeger, the tracing tests' OTLP backend (hack/jaeger).
# Static builds, cached by version
# outside the repository; a cached binary is rebuilt only when its build flags change. Prints the
# control plane's cache directory on its last line.
#
#   hack/build-binaries.sh                  build what is missing
#   hack/build-binaries.sh --control-plane  only the control plane's binaries
#   hack/build-binaries.sh --s3             only the S3-compatible server (versitygw)
#   hack/build-binaries.sh --jaeger         only Jaeger
#   PLAIT_CACHE_DIR=/path ...               cache somewhere else (default: ~/.cache/plait)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$here/versions.env"
cache="${PLAIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/plait}"
bin="$cache/bin/$PLAIT_BINARIES_TAG"
prometheus_bin="$cache/bin/$PLAIT_PROMETHEUS_TAG"
s3_bin="$cache/bin/$PLAIT_S3_TAG"
jaeger_bin="$cache/bin/$PLAIT_JAEGER_TAG"
only_control_plane=false
only_s3=false
only_jaeger=false
case "${1:-}" in
  "") ;;
  --control-plane) only_control_plane=true ;;
  --s3) only_s3=true ;;
  --jaeger) only_jaeger=true ;;
  *) echo "usage: $0 [--control-plane | --s3 | --jaeger]" >&2; exit 2 ;;
esac

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

mkdir -p "$bin" "$prometheus_bin" "$s3_bin" "$jaeger_bin"
# One build at a time per cache: two at once (two checkouts, or a test fixture beside `make`) would
# write the same temporary files.
exec 9>"$cache/bin/.lock"
flock 9
build() { # module-dir binary-name package ldflags [output-dir [tags]]
  local dir="$1" name="$2" pkg="$3" flags="$4" out="${5:-$bin}" tags="${6:-}"
  local stamp="$flags${tags:+ tags=$tags}"
  if [[ -x "$out/$name" && "$(cat "$out/.$name.ldflags" 2>/dev/null)" == "$stamp" ]]; then return 0; fi
  echo "building $name from $pkg (cached in $out)" >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build ${tags:+-tags "$tags"} -ldflags "-s -w $flags" -o "$out/.$name.tmp" "$pkg")
  mv "$out/.$name.tmp" "$out/$name"
  printf '%s' "$stamp" >"$out/.$name.ldflags"
  echo "built $name in $((SECONDS - start))s" >&2
}

# versitygw: an S3 gateway over a directory (its posix backend); the payload store's tests start it
s3flags="-X main.Version=${VERSITYGW_VERSION}"
if $only_s3; then
  build s3 versitygw github.com/versity/versitygw/cmd/versitygw "$s3flags" "$s3_bin"
  echo "$s3_bin"
  exit 0
fi
# Jaeger v2 (cmd/jaeger: an OpenTelemetry Collector with Jaeger's memory storage and query API; the
# UI's assets are not in the module, so its page is empty and the API answers)
jflags="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=${JAEGER_VERSION}"
if $only_jaeger; then
  build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$jflags" "$jaeger_bin"
  echo "$jaeger_bin"
  exit 0
fi

kminor="$(cut -d. -f2 <<<"$KUBERNETES_VERSION")"
kver="-X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${kminor}"
build kube etcd go.etcd.io/etcd/server/v3 ""
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kver"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$kver"
# helm's idea of the newest Kubernetes: without it `helm template` assumes v1.20 and refuses the
# chart's kubeVersion
hver="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
for pkg in chartutil lint/rules; do
  hver+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$((kminor + 1))"
done
build helm helm helm.sh/helm/v3/cmd/helm "$hver"
if ! $only_control_plane; then
  build kube kubelet k8s.io/kubernetes/cmd/kubelet "$kver"
  build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kver"
  build kube kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$kver"
  build pause pause plait.dev/hack/pause ""
  # v0.3xx.y is Prometheus 3.xx.y; only the Kubernetes service discovery is compiled in
  pver="$(sed -E 's/^v0\.3([0-9]{2})\.([0-9]+)$/3.\1.\2/' <<<"$PROMETHEUS_VERSION")"
  pflags="-X github.com/prometheus/common/version.Version=$pver -X github.com/prometheus/common/version.Branch=HEAD"
  sd_tags="remove_all_sd,enable_kubernetes_sd"
  build prometheus prometheus github.com/prometheus/prometheus/cmd/prometheus "$pflags" "$prometheus_bin" "$sd_tags"
  build prometheus promtool github.com/prometheus/prometheus/cmd/promtool "$pflags" "$prometheus_bin" "$sd_tags"
  build s3 versitygw github.com/versity/versitygw/cmd/versitygw "$s3flags" "$s3_bin"
  build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$jflags" "$jaeger_bin"
fi
echo "$bin"
