"""Version 1 of the `staged` workflow (upgrade tests): inc, wait for `go`, double."""

from plait import Flow
from tests.k8s.flows import double, inc

staged = Flow("staged").then(inc).wait_for_signal("go").then(double).build()
