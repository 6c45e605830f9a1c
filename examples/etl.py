"""A small ETL job: extract pages from a source in a loop, wait (durably) for the source's nightly
snapshot to settle, transform and load. The delay holds no worker while it waits.

Run it locally:   python examples/etl.py
On a cluster:     plait worker examples/etl.py   and   kubectl apply -f examples/etl-instance.yaml
"""

from __future__ import annotations

import time
from typing import Any

from plait import Flow, LoopResult, run_workflow, task


@task
def plan(job: dict[str, Any]) -> dict[str, Any]:
    # page_seconds: how long the (simulated) export API takes per page
    return {
        "source": job["source"],
        "pages": job.get("pages", 3),
        "page_seconds": job.get("page_seconds", 0),
        "page": 0,
        "rows": [],
    }


@task
def extract_page(state: dict[str, Any]) -> LoopResult[dict[str, Any]]:
    """One page per iteration; the loop ends when every page is read."""
    page = state["page"]
    time.sleep(state.get("page_seconds", 0))
    rows = [{"id": page * 10 + n, "value": (page + 1) * n} for n in range(3)]
    state = {**state, "page": page + 1, "rows": state["rows"] + rows}
    return LoopResult.done(state) if state["page"] >= state["pages"] else LoopResult.again(state)


@task
def transform(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**row, "value_squared": row["value"] ** 2} for row in state["rows"]]


@task
def load(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"loaded": len(rows), "checksum": sum(r["value_squared"] for r in rows)}


etl = (
    Flow("nightly-etl")
    .then(plan)
    .loop(extract_page, max_iterations=100)
    .delay("settle", "2s")
    .then(transform)
    .then(load)
    .build()
)


if __name__ == "__main__":
    print(run_workflow(etl, {"source": "s3://bucket/export", "pages": 3}))
