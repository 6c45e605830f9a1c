"""A worker pool that serves only the `beta` workflow, on its own queue (pool isolation tests)."""

from plait import Flow, get_task_context, task


@task(queue="gpu")
def who(x: int) -> str:
    ctx = get_task_context()
    return f"beta:{x}:{ctx.workflow_id if ctx else '?'}"


beta = Flow("beta").then(who).build()
