"""The `app` section of the fleet file: image, manifests (or a chart), history, notify,
registry, build."""

from __future__ import annotations

import re
from typing import Any

from console.config.chart_section import CHART_KEYS, chart_section
from console.config.checks import (IMAGE_REPO, Checker, did_you_mean, image_registry_host,
                                   is_loopback_host, or_empty, resolve_path)
from console.config.model import (DEFAULT_HISTORY_PATH, DEFAULT_ROLLOUT_TIMEOUT,
                                  NOTIFY_EVENTS, App, EmailConfig, HistoryConfig,
                                  NotifyConfig, RegistryConfig)
from console.config.yaml_reader import Path_
from console.names import show

_APP_KEYS = ("name", "image", "manifests", "namespace", "rollout_timeout", "history",
             "notify", "registry", "build", *CHART_KEYS)


def app_section(ck: Checker, raw: Any) -> App:
    p: Path_ = ("app",)
    raw = ck.mapping(raw, p, _APP_KEYS, required=("name", "image"))
    name = ck.dns_label(raw["name"], (*p, "name"))
    image = ck.text(raw["image"], (*p, "image"))
    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        raise ck.fail((*p, "image"), f"{show(image)}: give the repository without a tag "
                      "or digest; the tag is chosen per release")
    if not IMAGE_REPO.fullmatch(image):
        raise ck.fail((*p, "image"), f"{show(image)} is not an image repository "
                      "(registry host and lower-case path, e.g. registry.example.com/apps/web)")
    manifests = ck.file_path(raw.get("manifests"), (*p, "manifests")) or resolve_path(
        f"deploy/{name}", ck.base)
    rule = ck.text(raw.get("namespace", "{cluster}"), (*p, "namespace"))
    check_namespace_rule(ck, rule, (*p, "namespace"))
    timeout = ck.duration(raw.get("rollout_timeout"), (*p, "rollout_timeout"),
                          DEFAULT_ROLLOUT_TIMEOUT)

    hp: Path_ = (*p, "history")
    hraw = ck.mapping(or_empty(raw.get("history")), hp, ("path", "remote"))
    history = HistoryConfig(
        path=ck.file_path(hraw.get("path"), (*hp, "path"))
        or resolve_path(DEFAULT_HISTORY_PATH, ck.base),
        remote=ck.string(hraw.get("remote"), (*hp, "remote")))

    build_p: Path_ = (*p, "build")
    braw = ck.mapping(or_empty(raw.get("build")), build_p, ("command",))
    return App(name=name, image=image, manifests=manifests, namespace_rule=rule,
               rollout_timeout=timeout, history=history,
               notify=_notify(ck, raw.get("notify"), (*p, "notify")),
               registry=_registry(ck, raw.get("registry"), (*p, "registry"), image),
               build_command=ck.string(braw.get("command"), (*build_p, "command")),
               chart=chart_section(ck, raw, name))


def check_namespace_rule(ck: Checker, rule: str, path: Path_) -> None:
    # Only `{cluster}` is substituted; anything else in braces is a typo.
    for m in re.finditer(r"\{([^{}]*)\}", rule):
        if m.group(1) != "cluster":
            raise ck.fail(path, f"unknown placeholder {{{m.group(1)}}} in {show(rule)}; "
                          "only {cluster} is replaced")


def _notify(ck: Checker, raw: Any, p: Path_) -> NotifyConfig:
    raw = ck.mapping(or_empty(raw), p, ("on", "slack_webhook", "slack_webhook_env", "email",
                                         "timeout"))
    on = ck.names(raw.get("on", ["failure"]), (*p, "on"),
                  what="a list of events (failure, success, gate)")
    for i, event in enumerate(on):
        if event not in NOTIFY_EVENTS:
            raise ck.fail((*p, "on", i), f"unknown event {show(event)}"
                          + did_you_mean(event, NOTIFY_EVENTS)
                          + f"; one of {', '.join(NOTIFY_EVENTS)}")
    webhook = ck.string(raw.get("slack_webhook"), (*p, "slack_webhook"))
    if webhook is not None and not webhook.startswith(("https://", "http://")):
        raise ck.fail((*p, "slack_webhook"), "expected an http(s) URL")
    webhook_env = ck.env_name(raw.get("slack_webhook_env"), (*p, "slack_webhook_env"))
    if webhook is not None and webhook_env is not None:
        raise ck.fail(p, "give slack_webhook or slack_webhook_env, not both")
    email = None
    if raw.get("email") is not None:
        ep: Path_ = (*p, "email")
        eraw = ck.mapping(raw["email"], ep, ("to", "from", "host", "port", "starttls",
                                             "username_env", "password_env", "timeout"),
                          required=("to", "from", "host"))
        to = eraw["to"]
        to = (to,) if isinstance(to, str) else ck.names(to, (*ep, "to"),
                                                        what="a list of addresses")
        if not to:
            raise ck.fail((*ep, "to"), "expected at least one address")
        email = EmailConfig(
            to=tuple(to), sender=ck.text(eraw["from"], (*ep, "from")),
            host=ck.text(eraw["host"], (*ep, "host")),
            port=ck.integer(eraw.get("port"), (*ep, "port"), 587, 1, 65535) or 587,
            starttls=ck.boolean(eraw.get("starttls"), (*ep, "starttls"), True),
            username_env=ck.env_name(eraw.get("username_env"), (*ep, "username_env")),
            password_env=ck.env_name(eraw.get("password_env"), (*ep, "password_env")),
            timeout=ck.duration(eraw.get("timeout"), (*ep, "timeout"), 10.0))
    return NotifyConfig(on=on, slack_webhook=webhook, slack_webhook_env=webhook_env, email=email,
                        timeout=ck.duration(raw.get("timeout"), (*p, "timeout"), 10.0))


def _registry(ck: Checker, raw: Any, p: Path_, image: str) -> RegistryConfig:
    raw = ck.mapping(or_empty(raw), p, ("ca_file", "insecure", "username_env", "password_env",
                                    "auth_file", "timeout", "vault"))
    insecure, insecure_host = _insecure(ck, raw.get("insecure"), (*p, "insecure"), image)
    return RegistryConfig(
        ca_file=ck.file_path(raw.get("ca_file"), (*p, "ca_file")),
        insecure=insecure, insecure_host=insecure_host,
        username_env=ck.env_name(raw.get("username_env"), (*p, "username_env")),
        password_env=ck.env_name(raw.get("password_env"), (*p, "password_env")),
        auth_file=ck.file_path(raw.get("auth_file"), (*p, "auth_file")),
        timeout=ck.duration(raw.get("timeout"), (*p, "timeout"), 10.0),
        vault=ck.string(raw.get("vault"), (*p, "vault")))




def _insecure(ck: Checker, value: Any, p: Path_, image: str) -> tuple[bool, str | None]:
    """`insecure: true` (a loopback registry only) or `insecure: HOST[:PORT]` (that host).

    Plain HTTP and unverified TLS hand the registry credentials to whoever answers: that
    is fine on this machine, and elsewhere only for a host the fleet file names.
    """
    if value is None or value is False:
        return False, None
    host = image_registry_host(image)
    if value is True:
        if host is None or not is_loopback_host(host):
            named = host or "Docker Hub"
            raise ck.fail(p, f"true applies to a loopback registry only, and app.image's "
                          f"registry is {named}: name the host to allow plain HTTP and "
                          f"unverified TLS there (insecure: {named})")
        return True, None
    text = ck.text(value, p, what="true, false or the registry host (HOST[:PORT])")
    if text != host:
        raise ck.fail(p, f"{show(text)} is not app.image's registry host "
                      f"({host or 'Docker Hub'})")
    return True, text
