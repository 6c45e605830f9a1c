#!/usr/bin/env bash
# Builds plait's images with buildah (from Debian's packages), without a registry, as archives the
# plait dev node imports into its containerd: the operator and worker images from
# images/*/Dockerfile, the example worker image (images/worker/example.Dockerfile), and the node's
# sandbox image (the pause binary of hack/build-binaries.sh). Tagged as the chart's default values
# name them, so `helm install plait charts/plait` runs them as is.
#
# The Dockerfiles take the base image as a build argument (default: the pinned python slim image
# users get). Here no registry is reachable, so the base is made locally: Debian bookworm with its
# python3 and pip, by mmdebstrap, cached. An image is rebuilt only when its inputs change.
#
#   hack/build-images.sh          all of them
#   hack/build-images.sh pause    only the sandbox image (all a node needs to start)
#   PLAIT_CACHE_DIR=/path ...     cache somewhere else (default: ~/.cache/plait)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cache="${PLAIT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/plait}"
images="$cache/images"
base_image=localhost/plait-python:bookworm
host_certs=/etc/ssl/certs/ca-certificates.crt
version="$(sed -nE 's/^appVersion: *"?([^"]+)"?$/\1/p' "$repo/charts/plait/Chart.yaml")"
case "${1:-all}" in
  all | pause) what="${1:-all}" ;;
  *) echo "usage: $0 [all|pause]" >&2; exit 2 ;;
esac
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing; run hack/install-node-deps.sh" >&2; exit 1; }
done
mkdir -p "$images"
buildah() { command buildah --root "$cache/containers/storage" --runroot "$cache/containers/run" "$@"; }

timed() { # label command...
  local start=$SECONDS
  "${@:2}"
  echo "built $1 in $((SECONDS - start))s" >&2
}

save() { # image archive-name: the image as a docker archive the node's containerd imports
  rm -f "$images/.$2.tmp"
  buildah push --quiet "$1" "docker-archive:$images/.$2.tmp:$1" >/dev/null
  mv "$images/.$2.tmp" "$images/$2"
}

pause_image() {
  local bin ctr
  bin="$("$here/build-binaries.sh" | tail -n 1)"
  ctr="$(buildah from scratch)"
  buildah copy --quiet "$ctr" "$bin/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  buildah commit --quiet --rm "$ctr" localhost/plait-pause:1 >/dev/null
  save localhost/plait-pause:1 pause.tar
}

base() { # Debian bookworm with python3 and pip, as $base_image
  local rootfs="$images/python-base-bookworm.rootfs.tar" ctr
  if [[ ! -s "$rootfs" ]]; then
    # pip may install into the image's Python: it is the image's only one
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,ca-certificates,tzdata \
      --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
      bookworm "$rootfs.tmp" http://deb.debian.org/debian
    mv "$rootfs.tmp" "$rootfs"
  fi
  if [[ "$(cat "$images/.base.stamp" 2>/dev/null)" == "$(stat -c %Y "$rootfs")" ]] \
    && buildah inspect --type image "$base_image" >/dev/null 2>&1; then return 0; fi
  ctr="$(buildah from scratch)"
  buildah add --quiet "$ctr" "$rootfs" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/bin:/bin --cmd '["python3"]' "$ctr"
  buildah commit --quiet --rm "$ctr" "$base_image" >/dev/null
  stat -c %Y "$rootfs" >"$images/.base.stamp"
}

image() { # name dockerfile image-tag also-hashed input-paths...
  local name="$1" dockerfile="$2" tag="$3" inputs
  inputs="$(cd "$repo" && {
    echo "$4"
    cat "$images/.base.stamp"
    git ls-files -s -- "$dockerfile"* "${@:5}"
    git diff HEAD -- "$dockerfile"* "${@:5}"
    git ls-files --others --exclude-standard -- "${@:5}" | xargs -r sha256sum
  } | sha256sum | cut -c1-64)"
  if [[ -s "$images/$name.tar" && "$(cat "$images/.$name.inputs" 2>/dev/null)" == "$inputs" ]]; then return 0; fi
  # no --layers: buildah 1.28 does not mount a cached stage for RUN --mount=from=...
  # RUN steps see the host's trust store (pip reaches PyPI through whatever proxy the host trusts);
  # it is mounted, never copied into the image
  (cd "$repo" && buildah bud --quiet --network host --build-arg "BASE=$base_image" \
    --volume "$host_certs:/etc/ssl/certs/ca-certificates.crt:ro" \
    --ignorefile "$dockerfile.dockerignore" -f "$dockerfile" -t "$tag" . >/dev/null)
  save "$tag" "$name.tar"
  echo "$inputs" >"$images/.$name.inputs"
}

[[ -s "$images/pause.tar" ]] || timed pause pause_image
if [[ "$what" == all ]]; then
  timed "python base" base
  sources=(pyproject.toml README.md worker operator)
  timed operator image operator images/operator/Dockerfile "ghcr.io/plait-dev/plait-operator:$version" "" "${sources[@]}"
  timed worker image worker images/worker/Dockerfile "ghcr.io/plait-dev/plait-worker:$version" "" "${sources[@]}"
  # FROM the worker image: rebuilt with it
  timed example image "example-$version" images/worker/example.Dockerfile "ghcr.io/plait-dev/plait-examples:$version" \
    "$(cat "$images/.worker.inputs")" examples images/worker/example-requirements.txt
fi
buildah rmi --prune >/dev/null 2>&1 || true # the images replaced by these builds
echo "$images"
