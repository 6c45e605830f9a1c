// Builds Jaeger v2 (cmd/jaeger: an OpenTelemetry Collector with Jaeger's storage and query API)
// from Go modules, the tracing tests' OTLP backend. See hack/build-binaries.sh.
module plait.dev/hack/jaeger

go 1.26.7

require github.com/jaegertracing/jaeger v1.75.0
