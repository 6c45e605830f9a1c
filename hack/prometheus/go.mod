// Builds Prometheus and promtool (the 3.x line, published as v0.3xx.y) from Go modules, for the
// node tier's real Prometheus and the alert rule tests. See hack/build-binaries.sh.
module plait.dev/hack/prometheus

go 1.26.7

require github.com/prometheus/prometheus v0.316.0
