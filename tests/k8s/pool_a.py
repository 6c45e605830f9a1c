"""A worker pool that serves only the `alpha` workflow (pool isolation tests)."""

from plait import Flow, get_task_context, task


@task
def who(x: int) -> str:
    ctx = get_task_context()
    return f"alpha:{x}:{ctx.workflow_id if ctx else '?'}"


alpha = Flow("alpha").then(who).build()
