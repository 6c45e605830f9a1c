// Builds versitygw (an S3-compatible gateway over a POSIX directory) from Go modules, for the
// payload store's tests and `plait dev`. See hack/build-binaries.sh.
module plait.dev/hack/s3

go 1.26.7

require github.com/versity/versitygw v1.8.0
