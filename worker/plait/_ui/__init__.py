"""plait's web UI (``plait ui``): pages rendered on the server, live parts over SSE, graphs by Graphviz.

watches.py  one shared watch per kind and namespace (the UI's only reads), fanned out to pages
views.py    what each page shows, from the watched objects (pure)
graph.py    a definition as a Graphviz graph, each step styled by its state; SVG via ``dot``
diff.py     what changed between two versions of a workflow (pure)
forms.py    a signal's payload form from its JSON Schema (pure)
server.py   the aiohttp application: pages, SSE streams, actions, CSRF
templates/  Jinja2 templates; static/ the vendored htmx (see hack/ui-assets) and the stylesheet
"""
