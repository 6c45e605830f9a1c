"""The web UI in a real browser (Debian's Chromium, Playwright) against the real control plane,
the operator and a worker: every page renders, live updates arrive without a reload, every action
writes what it should, and RBAC refusals and read-only mode show on the page.

Each page's screenshot is saved into docs/images/ui-*.png (docs/ui.md and the README show them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from plait._kube.client import Kube
from plait._kube.models import DEFINITIONS, INSTANCES, SCHEDULES, SIGNALS
from plait._worker.runtime import definition_object_name
from plait.errors import Forbidden
from tests.conftest import ROLEBINDINGS, ROLES
from tests.k8s.support import send_signal, submit, wait_for, wait_phase
from tests.ui.conftest import screenshot
from tests.ui.support import UIProcess

pytestmark = pytest.mark.cluster

ORDER = {
    "order_id": "A-1001",
    "customer": "ada@example.com",
    "items": [{"sku": "BOOK-7", "quantity": 2, "unit_price": 30.0}, {"sku": "PEN-1", "quantity": 5, "unit_price": 2.5}],
}


def annotations(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    return dict(kube.get(INSTANCES, name, namespace)["metadata"].get("annotations") or {})


def test_the_instance_list_updates_live_as_instances_start_and_finish(
    page: Any, ui: UIProcess, ui_ns: str, admin: Kube
) -> None:
    page.goto(ui.url(f"/instances?ns={ui_ns}"))
    expect(page.get_by_role("heading", name=re.compile("Instances"))).to_be_visible()
    submit(admin, ui_ns, "live-1", "gate", "ada")  # after the page loaded: it must arrive by itself
    row = page.locator('tr[data-instance="live-1"]')
    expect(row).to_contain_text("AwaitingSignal")
    send_signal(admin, ui_ns, "live-1", "go", {"by": "bob"})
    expect(row).to_contain_text("Succeeded")
    # filters: by phase and workflow, server-side
    page.goto(ui.url(f"/instances?ns={ui_ns}&phase=Failed"))
    expect(page.locator('tr[data-instance="live-1"]')).to_have_count(0)
    page.goto(ui.url(f"/instances?ns={ui_ns}&workflow=gate&phase=Succeeded"))
    expect(page.locator('tr[data-instance="live-1"]')).to_have_count(1)


def test_an_instance_shows_its_graph_steps_attempts_and_events_and_takes_a_signal(
    page: Any, ui: UIProcess, ui_ns: str, admin: Kube
) -> None:
    submit(admin, ui_ns, "order-a-1001", "order-processing", ORDER)
    wait_phase(admin, ui_ns, "order-a-1001", "AwaitingSignal")
    page.goto(ui.url(f"/instances/{ui_ns}/order-a-1001"))
    graph = page.locator(".graph svg")
    expect(graph).to_be_visible()
    # each step's state is written in the graph, not only coloured
    expect(graph.locator('g[id="step-validate"]')).to_contain_text("succeeded")
    expect(graph.locator('g[id="step-approval"]')).to_contain_text("waiting")
    screenshot(page, "instance")
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    # a step with a retry: click it in the graph, its attempts show
    graph.locator('g[id="step-reserve_stock"] a').click()
    detail = page.locator("#step")
    expect(detail).to_contain_text("Attempt 1")
    expect(detail).to_contain_text("warehouse API timed out")
    expect(detail).to_contain_text("Attempt 2")
    expect(detail.locator("details", has_text="Output")).to_contain_text("BOOK-7x2")
    screenshot(page, "instance-step")
    # the signal form: a JSON payload
    form = page.get_by_role("form", name="Send signal approval")
    form.locator("textarea").fill('{"approved": true, "by": "alice"}')
    form.get_by_role("button").click()
    expect(page.locator("#flash")).to_contain_text("created: signal 'approval'")
    expect(page.locator("#head")).to_contain_text("Succeeded")  # live, no reload
    [sent] = [s for s in admin.list(SIGNALS, ui_ns)["items"] if s["spec"]["instance"] == "order-a-1001"]
    assert sent["spec"]["payload"] == {"approved": True, "by": "alice"}


def test_pause_resume_and_cancel_write_their_annotations(page: Any, ui: UIProcess, ui_ns: str, admin: Kube) -> None:
    submit(admin, ui_ns, "ctl-1", "gate", "cy")
    wait_phase(admin, ui_ns, "ctl-1", "AwaitingSignal")
    page.goto(ui.url(f"/instances/{ui_ns}/ctl-1"))
    actions = page.locator("#actions")
    actions.locator("form", has=page.get_by_role("button", name="Pause")).locator("input[name=reason]").fill("lunch")
    actions.get_by_role("button", name="Pause").click()
    expect(page.locator("#flash")).to_contain_text("plait.dev/pause='lunch' set")
    assert annotations(admin, ui_ns, "ctl-1")["plait.dev/pause"] == "lunch"
    expect(page.locator("#head")).to_contain_text("Paused")
    screenshot(page, "instance-paused")
    actions.get_by_role("button", name="Resume").click()  # the actions re-rendered live: Resume replaced Pause
    expect(page.locator("#flash")).to_contain_text("plait.dev/pause removed")
    assert "plait.dev/pause" not in annotations(admin, ui_ns, "ctl-1")
    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel ctl-1? This cannot be undone."
    actions.get_by_role("button", name="Cancel").click()
    expect(page.locator("#flash")).to_contain_text("plait.dev/cancel")
    expect(page.locator("#head")).to_contain_text("Cancelled")
    assert wait_phase(admin, ui_ns, "ctl-1", "Cancelled")


def test_rerun_from_a_step_and_upgrade_are_taken_by_the_operator(
    page: Any, ui: UIProcess, ui_ns: str, admin: Kube
) -> None:
    submit(admin, ui_ns, "broken-1", "broken", "x")
    wait_phase(admin, ui_ns, "broken-1", "Failed")
    page.goto(ui.url(f"/instances/{ui_ns}/broken-1"))
    expect(page.locator("#head")).to_contain_text("the disk is full")
    expect(page.locator('.graph g[id="step-boom"]')).to_contain_text("failed")
    screenshot(page, "instance-failed")
    page.locator("#actions select[name=step]").select_option("boom")
    page.get_by_role("button", name="Rerun").click()
    expect(page.locator("#flash")).to_contain_text("plait.dev/retry='boom' set")
    # the operator reruns it: a second attempt of boom, which fails the same way
    wait_for(
        lambda: (
            (admin.get(INSTANCES, "broken-1", ui_ns)["status"].get("steps") or [{}])[-1].get("runs", 0) >= 2
            or "plait.dev/retry" not in annotations(admin, ui_ns, "broken-1")
        ),
        what="the operator to take the retry",
    )
    submit(admin, ui_ns, "up-1", "gate", "dee")
    wait_phase(admin, ui_ns, "up-1", "AwaitingSignal")
    page.goto(ui.url(f"/instances/{ui_ns}/up-1"))
    page.get_by_role("button", name="Upgrade").click()
    expect(page.locator("#flash")).to_contain_text("plait.dev/upgrade=latest set")
    # the operator answers it (already on the latest version) and takes the annotation away
    wait_for(
        lambda: (
            any(
                c.get("type") == "Upgraded" and c.get("reason") == "UpToDate"
                for c in admin.get(INSTANCES, "up-1", ui_ns)["status"].get("conditions") or []
            )
            and "plait.dev/upgrade" not in annotations(admin, ui_ns, "up-1")
        ),
        what="the operator to answer the upgrade",
    )


def test_definitions_show_versions_with_instance_counts_and_a_diff(
    page: Any, ui: UIProcess, ui_ns: str, admin: Kube
) -> None:
    from plait import Flow
    from tests.ui.flows import boom, hello

    # a second version of `broken`, as a worker with newer code would publish it (no instance of
    # `broken` starts after this: none would run, this worker does not serve that version)
    newer = Flow("broken").then(hello).then(hello, name="hello_again").then(boom).build()
    body = {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "WorkflowDefinition",
        "metadata": {"name": definition_object_name(newer)},
        "spec": newer.definition.to_data(),
    }
    admin.create(DEFINITIONS, body, ui_ns)
    page.goto(ui.url(f"/definitions?ns={ui_ns}"))
    broken = page.locator("section.workflow", has=page.get_by_role("heading", name="broken", exact=True))
    expect(broken.locator("tbody tr")).to_have_count(2)
    expect(broken.locator("tbody tr").last).to_contain_text("1")  # broken-1 runs the older version
    screenshot(page, "definitions")
    broken.get_by_role("link", name="diff with previous").click()
    diff = page.locator(".diff")
    expect(diff).to_contain_text("Steps added")
    expect(diff).to_contain_text("+ hello_again")
    expect(diff).to_contain_text("hello -> hello_again")
    expect(page.locator('.graph g[id="step-hello_again"]')).to_contain_text("added")
    screenshot(page, "definition-diff")


def test_signals_schedules_and_queues_pages(page: Any, ui: UIProcess, ui_ns: str, admin: Kube) -> None:
    for name in ("q-1", "q-2", "q-3"):
        submit(admin, ui_ns, name, "one-at-a-time", name)
    wait_phase(admin, ui_ns, "q-3", "Queued")
    page.goto(ui.url(f"/queues?ns={ui_ns}"))
    queued = page.locator("#queued")
    expect(queued).to_contain_text("q-2")
    expect(queued).to_contain_text("q-3")
    screenshot(page, "queues")
    send_signal(admin, ui_ns, "q-1", "go", {"by": "ed"})  # q-1 finishes, q-2 starts: the queue moves, live
    expect(queued.locator("tbody tr", has_text="q-3")).to_contain_text("1")
    expect(queued).not_to_contain_text("q-2")

    page.goto(ui.url(f"/signals?ns={ui_ns}"))
    expect(page.locator("#signals")).to_contain_text("q-1")
    expect(page.get_by_role("link", name="q-2")).to_be_visible()  # waiting for `go`
    screenshot(page, "signals")

    schedule = {
        "apiVersion": "plait.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": "nightly-gate"},
        "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Amsterdam", "workflow": "gate", "input": "night"},
    }
    admin.create(SCHEDULES, schedule, ui_ns)
    page.goto(ui.url(f"/schedules?ns={ui_ns}"))
    row = page.locator("#schedules tbody tr", has_text="nightly-gate")
    expect(row).to_contain_text("0 3 * * *")
    expect(row).to_contain_text("Europe/Amsterdam")
    expect(row).to_contain_text(
        re.compile(r"\d{4}-\d\d-\d\dT03:00|\d{4}-\d\d-\d\dT0[12]:00")
    )  # next run, once the operator set it
    screenshot(page, "schedules")
    page.goto(ui.url(f"/instances?ns={ui_ns}"))
    expect(page.locator('tr[data-instance="q-1"]')).to_contain_text("Succeeded")
    screenshot(page, "instances")


def test_without_dot_the_browser_draws_the_graph_and_a_signal_schema_makes_a_form(
    page: Any, start_ui: Callable[..., UIProcess], ui_ns: str, admin: Kube, worker: Any
) -> None:
    """`--graphs browser`, as in the chart's pod (no Graphviz in the operator image): the browser
    draws the graph (Graphviz compiled to WebAssembly, served by the UI), live updates included;
    the signal declared with a schema gets a form, and the server checks the payload against it."""
    submit(admin, ui_ns, "form-1", "approval", "fay")
    wait_phase(admin, ui_ns, "form-1", "AwaitingSignal")
    browser_ui = start_ui("-n", ui_ns, "--graphs", "browser")
    errors: list[str] = []  # a CSP refusal or a WebAssembly failure shows here (a refused POST's 400 does not count)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    page.goto(browser_ui.url(f"/instances/{ui_ns}/form-1"))
    graph = page.locator(".graph figure svg")
    expect(graph.locator('g[id="step-hello"]')).to_contain_text("succeeded")
    expect(graph.locator('g[id="step-approve"]')).to_contain_text("waiting")
    form = page.get_by_role("form", name="Send signal approve")
    expect(form.locator("textarea")).to_have_count(0)  # fields, not the JSON text area
    expect(form.get_by_label("Amount")).to_be_visible()
    expect(form.locator('select[name="field.level"]')).to_have_value("low")
    form.get_by_label("Approved by").fill("gus")
    form.get_by_label("Amount").fill("0")
    form.get_by_role("checkbox").check()
    screenshot(page, "signal-form")
    form.get_by_role("button").click()
    flash = page.locator("#flash")
    expect(flash).to_contain_text("does not match its schema")  # minimum 1: nothing is sent
    assert not [s for s in admin.list(SIGNALS, ui_ns)["items"] if s["spec"]["instance"] == "form-1"]
    form.get_by_label("Amount").fill("250")
    form.get_by_role("button").click()
    expect(flash).to_contain_text("workflowsignal")
    (sent,) = [s for s in admin.list(SIGNALS, ui_ns)["items"] if s["spec"]["instance"] == "form-1"]
    assert sent["spec"]["payload"] == {"by": "gus", "amount": 250, "level": "low", "approved": True}
    # the graph is drawn again in the browser as the live fragment comes in
    expect(graph.locator('g[id="step-bye"]')).to_contain_text("succeeded")
    expect(page.locator("#head")).to_contain_text("Succeeded")
    assert not errors, errors


def test_an_action_rbac_forbids_is_refused_and_shown(
    page: Any, start_ui: Callable[..., UIProcess], ui_ns: str, admin: Kube, worker: Any
) -> None:
    """A viewer may read (get, list, watch) but not patch: the UI acting as them shows the 403."""
    rules = [
        {"apiGroups": ["plait.dev"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    ]
    admin.create(ROLES, {"metadata": {"name": "viewer"}, "rules": rules}, ui_ns)
    binding = {
        "metadata": {"name": "viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
        "subjects": [{"kind": "User", "name": "vera", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    admin.create(ROLEBINDINGS, binding, ui_ns)
    submit(admin, ui_ns, "rbac-1", "gate", "vera")
    wait_phase(admin, ui_ns, "rbac-1", "AwaitingSignal")
    viewer = start_ui("-n", ui_ns, "--as", "vera")
    page.goto(viewer.url(f"/instances/{ui_ns}/rbac-1"))
    expect(page.locator("#head")).to_contain_text("AwaitingSignal")  # reading works
    page.get_by_role("button", name="Pause").click()
    flash = page.locator("#flash")
    expect(flash).to_contain_text("Refused")
    expect(flash).to_contain_text("RBAC")
    expect(flash).to_contain_text("forbidden")
    screenshot(page, "refused")
    assert "plait.dev/pause" not in annotations(admin, ui_ns, "rbac-1")
    form = page.get_by_role("form", name="Send signal go")
    form.locator("textarea").fill('{"by": "vera"}')
    form.get_by_role("button").click()
    expect(flash).to_contain_text("RBAC")
    assert not [s for s in admin.list(SIGNALS, ui_ns)["items"] if s["spec"]["instance"] == "rbac-1"]
    with Kube(admin.connection.as_user("vera")) as vera, pytest.raises(Forbidden):
        # the same refusal the API server gives the user directly
        vera.patch(INSTANCES, "rbac-1", {"metadata": {"annotations": {"x": "y"}}}, ui_ns)


def test_read_only_hides_actions_and_refuses_posts_and_posts_need_the_csrf_token(
    page: Any, start_ui: Callable[..., UIProcess], ui: UIProcess, ui_ns: str, admin: Kube
) -> None:
    submit(admin, ui_ns, "ro-1", "gate", "ro")
    wait_phase(admin, ui_ns, "ro-1", "AwaitingSignal")
    read_only = start_ui("-n", ui_ns, "--read-only")
    page.goto(read_only.url(f"/instances/{ui_ns}/ro-1"))
    expect(page.locator("#head")).to_contain_text("AwaitingSignal")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    refused = httpx.post(read_only.url(f"/instances/{ui_ns}/ro-1/pause"), data={"csrf": token})
    assert refused.status_code == 403 and "read-only" in refused.text
    # the writable UI: no token, a wrong token, or another origin are refused before any write
    assert httpx.post(ui.url(f"/instances/{ui_ns}/ro-1/pause"), data={}).status_code == 403
    assert httpx.post(ui.url(f"/instances/{ui_ns}/ro-1/pause"), data={"csrf": "guess"}).status_code == 403
    page.goto(ui.url(f"/instances/{ui_ns}/ro-1"))
    good = page.locator('meta[name="csrf-token"]').get_attribute("content")
    other = httpx.post(
        ui.url(f"/instances/{ui_ns}/ro-1/pause"), data={"csrf": good}, headers={"Origin": "http://evil.example"}
    )
    assert other.status_code == 403
    rebound = httpx.get(ui.url("/instances"), headers={"Host": "evil.example"})
    assert rebound.status_code == 421  # DNS rebinding: another name for 127.0.0.1 gets nothing
    assert "plait.dev/pause" not in annotations(admin, ui_ns, "ro-1")
