"""What the API server does to an object before storing it: defaults and validation.

Defaults follow the real ones that matter for rollouts (a Deployment's strategy, replicas,
revisionHistoryLimit and progressDeadlineSeconds; a pod template's restartPolicy, dnsPolicy,
container imagePullPolicy...), so that templates compare equal after a round trip through
`kubectl rollout undo` and re-applies of the same manifest do not bump `generation`.
"""

from __future__ import annotations

import re
from typing import Any

from console.sim.discovery import ResourceType

Obj = dict[str, Any]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Undecodable(Exception):
    """A field of the wrong JSON type: the API server cannot decode the object at all.

    A JSON create or update is a 400 ("cannot be handled as a Deployment: json: cannot
    unmarshal string into Go struct field ..."); a server-side apply fails earlier, when
    the patch is typed ("failed to create typed patch object ...: .spec.replicas: expected
    numeric (int or float), got string"), which the API server answers with a 500.
    """

    def __init__(self, json_message: str, apply_message: str) -> None:
        super().__init__(json_message)
        self.json_message = json_message
        self.apply_message = apply_message


# The integer fields of the kinds a release applies: (path, Go struct that holds the field).
_INT_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Deployment": (("spec.replicas", "DeploymentSpec"),
                   ("spec.minReadySeconds", "DeploymentSpec"),
                   ("spec.revisionHistoryLimit", "DeploymentSpec"),
                   ("spec.progressDeadlineSeconds", "DeploymentSpec")),
    "ReplicaSet": (("spec.replicas", "ReplicaSetSpec"), ("spec.minReadySeconds", "ReplicaSetSpec")),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object"


def check_types(rt: ResourceType, obj: Obj) -> None:
    """Raise Undecodable when an integer field of `obj` holds another JSON type."""
    found: list[tuple[str, str, str, Any]] = []   # (json path, apply path, struct, value)
    for path, struct in _INT_FIELDS.get(rt.kind, ()):
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            found.append((path, "." + path, struct, value))
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") \
        if isinstance(obj.get("spec"), dict) and isinstance(obj["spec"].get("template"), dict) else None
    for container in (pod.get("containers") if isinstance(pod, dict) else None) or []:
        for port in (container.get("ports") if isinstance(container, dict) else None) or []:
            value = port.get("containerPort") if isinstance(port, dict) else None
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                found.append(("spec.template.spec.containers.ports.containerPort",
                              f'.spec.template.spec.containers[name="{container.get("name")}"]'
                              ".ports[0].containerPort", "ContainerPort", value))
    if not found:
        return
    path, apply_path, struct, value = found[0]
    got = _json_type(value)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    who = f'{meta.get("namespace", "")}/{meta.get("name", "")}; {rt.api_version}, Kind={rt.kind}'
    problems = [f"{p}: expected numeric (int or float), got {_json_type(v)}"
                for _, p, _, v in found]
    apply_text = problems[0] if len(problems) == 1 else "errors:\n  " + "\n  ".join(problems)
    raise Undecodable(
        f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot '
        f"unmarshal {got} into Go struct field {struct}.{path} of type int32",
        f"failed to create typed patch object ({who}): {apply_text}")


class Invalid(Exception):
    """A 422: `causes` are (field, reason, message) triples."""

    def __init__(self, causes: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, _, m in causes))
        self.causes = causes


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_pod_spec(spec: Obj) -> None:
    """Fill pod spec defaults in place."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", _image_pull_policy(str(c.get("image", ""))))
            c.setdefault("resources", {})
            for port in c.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _default_template(spec: Obj) -> None:
    template = spec.setdefault("template", {})
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        pod_spec = template.setdefault("spec", {})
        if isinstance(pod_spec, dict):
            default_pod_spec(pod_spec)


def default(rt: ResourceType, obj: Obj) -> None:
    """Apply the defaults of `rt` to `obj` in place."""
    spec = obj.get("spec")
    if rt.kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxSurge", "25%")
                    ru.setdefault("maxUnavailable", "25%")
        _default_template(spec)
    elif rt.kind == "ReplicaSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        _default_template(spec)
    elif rt.kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
    elif rt.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif rt.kind == "Secret":
        obj.setdefault("type", "Opaque")


def _selector_matches(selector: Any, labels: Any) -> bool:
    if not isinstance(selector, dict) or not isinstance(labels, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Raise Invalid when `obj` would not be accepted (422)."""
    causes: list[tuple[str, str, str]] = []
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not name:
        causes.append(("metadata.name", "FieldValueRequired", "Required value: name or generateName is required"))
    elif not (_DNS_LABEL if rt.kind == "Namespace" else _DNS_SUBDOMAIN).match(name) or len(name) > 253:
        causes.append(("metadata.name", "FieldValueInvalid",
                       f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower case '
                       "alphanumeric characters, '-' or '.', and must start and end with an "
                       "alphanumeric character"))
    if rt.kind in ("Deployment", "ReplicaSet"):
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            causes.append(("spec", "FieldValueRequired", "Required value"))
        else:
            selector = spec.get("selector")
            template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
            labels = (template.get("metadata") or {}).get("labels")
            if not selector:
                causes.append(("spec.selector", "FieldValueRequired", "Required value"))
            elif not _selector_matches(selector, labels):
                causes.append(("spec.template.metadata.labels", "FieldValueInvalid",
                               f"Invalid value: {labels!r}: `selector` does not match template `labels`"))
            if old is not None and selector and old.get("spec", {}).get("selector") != selector:
                causes.append(("spec.selector", "FieldValueInvalid",
                               f"Invalid value: {selector!r}: field is immutable"))
            replicas = spec.get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                causes.append(("spec.replicas", "FieldValueInvalid",
                               f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
            containers = (template.get("spec") or {}).get("containers")
            if not containers:
                causes.append(("spec.template.spec.containers", "FieldValueRequired", "Required value"))
            else:
                for n, c in enumerate(containers):
                    if not isinstance(c, dict) or not c.get("name"):
                        causes.append((f"spec.template.spec.containers[{n}].name",
                                       "FieldValueRequired", "Required value"))
                    elif not c.get("image"):
                        causes.append((f"spec.template.spec.containers[{n}].image",
                                       "FieldValueRequired", "Required value"))
                    for k, port in enumerate(c.get("ports") or () if isinstance(c, dict) else ()):
                        # As kube-apiserver's validation (found by the lab's dry-run story).
                        number = port.get("containerPort") if isinstance(port, dict) else None
                        if not isinstance(number, int) or not 1 <= number <= 65535:
                            causes.append((f"spec.template.spec.containers[{n}].ports[{k}].containerPort",
                                           "FieldValueInvalid", f"Invalid value: {number!r}: must be "
                                           "between 1 and 65535, inclusive"))
    if rt.kind == "Lease":
        spec = obj.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        if duration is not None and (not isinstance(duration, int) or duration <= 0):
            causes.append(("spec.leaseDurationSeconds", "FieldValueInvalid",
                           "Invalid value: must be greater than 0"))
    if causes:
        raise Invalid(causes)


def spec_of(rt: ResourceType, obj: Obj) -> Any:
    """What a `generation` bump compares: `spec`, or the data of kinds without one."""
    if rt.kind in ("ConfigMap", "Secret"):
        return (obj.get("data"), obj.get("binaryData"))
    if rt.kind in ("Role", "ClusterRole"):
        return obj.get("rules")
    return obj.get("spec")
