"""A release started from the console notifies like a headless one: the Slack webhook
and the mail arrive (the real local receivers of tests/history), from the engine
process the console runs."""

from __future__ import annotations

import pytest

from console.config import load
from tests.history.conftest import smtp_server, webhook  # noqa: F401 - pytest fixtures

from .conftest import fleet_yaml
from .test_stories import console, open_form_and_start
from .ui_helpers import story, wait_for

pytestmark = pytest.mark.timeout(120)


@story
async def test_a_release_from_the_console_sends_the_webhook_and_the_mail(
        sim_fleet, tmp_path, webhook, smtp_server) -> None:  # noqa: F811 - fixtures
    ids = ["staging", "prod-eu"]
    fleet = sim_fleet(ids)
    fleet.set_faults("prod-eu", never_pull=["v2"])
    notify = (f"  notify:\n"
              f"    on: [failure]\n"
              f"    slack_webhook: {webhook.url}\n"
              f"    email: {{to: ops@example.com, from: console@example.com,"
              f" host: 127.0.0.1, port: {smtp_server.port}, starttls: false}}\n")
    source = tmp_path / "fleet.yaml"
    source.write_text(fleet_yaml(ids, tmp_path / "history").replace(
        "\ndefaults:\n", f"\n{notify}defaults:\n", 1))
    config = load(fleet.write_kubeconfigs(tmp_path / "kube", config_path=source))
    assert config.app.notify.slack_webhook == webhook.url

    async with console(config, operator="alice") as (app, pilot):
        await open_form_and_start(pilot, app, "parallel", "v2")
        await wait_for(pilot, lambda: app.state.release is not None
                       and app.state.release.outcome is not None, what="the end", timeout=60)
        await wait_for(pilot, lambda: webhook.bodies and smtp_server.messages,
                       what="the webhook and the mail", timeout=30)

    [body] = webhook.bodies
    assert (body["app"], body["version"], body["outcome"]) == ("user-service", "v2", "failed")
    assert body["release"] == app.state.release.release_id
    assert body["failed_clusters"] == ["prod-eu"]
    [(sender, recipients, message)] = smtp_server.messages
    assert (sender, recipients) == ("console@example.com", ["ops@example.com"])
    assert "user-service v2: release failed on prod-eu" in message
