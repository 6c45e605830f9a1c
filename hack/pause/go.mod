// The sandbox ("pause") image of the plait dev node: containerd cannot pull one here, so
// hack/build-images.sh packs this binary as localhost/plait-pause:1. See hack/build-binaries.sh.
module plait.dev/hack/pause

go 1.26.0
