"""Version 2 of the `staged` workflow (upgrade tests): version 1 with `square` added at the end."""

from plait import Flow
from tests.k8s.flows import double, inc, square

staged = Flow("staged").then(inc).wait_for_signal("go").then(double).then(square).build()
