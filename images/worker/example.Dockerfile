# A user's worker image: FROM the plait worker base, plus the workflow code and what it imports.
# This one packages the repository's examples/; in your own repository copy your package instead.
#
#   docker build -f images/worker/example.Dockerfile -t registry.example.com/plait-examples:1 .
#
# and run it as a worker pool:
#   helm install plait charts/plait --set 'workers.pools[0].name=examples' \
#     --set 'workers.pools[0].module=examples' \
#     --set 'workers.pools[0].image.repository=registry.example.com/plait-examples' \
#     --set 'workers.pools[0].image.tag=1'

FROM ghcr.io/plait-dev/plait-worker:0.1.0
# third-party dependencies first (a layer that changes less often than the code); installing
# needs root, running does not
USER 0
COPY images/worker/example-requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
USER 65532:65532
COPY examples/ /app/examples/
CMD ["worker", "examples"]
