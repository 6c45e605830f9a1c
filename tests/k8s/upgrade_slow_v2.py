"""Version 2 of the `slow` workflow of tests.k8s.flows (upgrade tests): echo added before nap."""

from plait import Flow
from tests.k8s.flows import after_nap, echo, nap

slow = Flow("slow").then(echo).then(nap).then(after_nap).build()
