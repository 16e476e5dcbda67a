"""KWOK's configuration for one lab cluster: the Stages that play its nodes and pods.

KWOK (sigs.k8s.io/kwok) is the lab's kubelet: it watches Nodes and Pods on the real
kube-apiserver and patches their status as the Stages below say. The node stages are
KWOK's own `node-initialize` and `node-heartbeat-with-lease` (kustomize/stage/node in its
module, Apache-2.0). The pod stages are the lab's, written from the cluster's `sim:`
settings so the lab honours the fleet file as the simulator does:

- an image whose tag (or reference) matches `never_pull` goes ErrImagePull, then
  ImagePullBackOff, and back to ErrImagePull every few seconds, never Ready;
- one matching `crash` goes CrashLoopBackOff with a rising restartCount;
- any other pod becomes Running and Ready after `readiness_delay` (+ up to `jitter`) s;
- a deleted pod goes away after a short grace period.

Globs become RE2 regular expressions tested by KWOK's jq selectors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

_SPECIAL = set(".+()|{}$^[]\\")


def glob_regex(glob: str) -> str:
    """An anchored RE2 regex for an fnmatch-style glob (`*`, `?`), without backslashes
    (special characters go into brackets) so it survives YAML and jq string quoting."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in _SPECIAL:
            out.append("[\\^]" if ch == "^" else f"[{ch}]")
        else:
            out.append(ch)
    return "^" + "".join(out) + "$"


def _matches_jq(globs: Iterable[str]) -> str:
    """A jq expression that is "yes" when some container's tag or image matches a glob."""
    regexes = [glob_regex(g) for g in globs]
    if not regexes:
        return '"no"'
    tests = " or ".join(f"test({json.dumps(r)})" for r in regexes)
    # The tag as console.sim.faults.tag_of reads it: after the last '/', before any digest.
    tag = '(split("@")[0] | split("/")[-1] | if contains(":") then split(":")[1] else "" end)'
    return (f'if ([.spec.containers[].image | ({tag} | {tests}) or ({tests})] | any) '
            'then "yes" else "no" end')


def _stage(name: str, kind: str, selector: list[dict[str, object]], next_: dict[str, object],
           delay_ms: int | None = None, jitter_ms: int | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"resourceRef": {"apiGroup": "v1", "kind": kind},
                               "selector": {"matchExpressions": selector}, "next": next_}
    if delay_ms is not None:
        delay: dict[str, object] = {"durationMilliseconds": delay_ms}
        if jitter_ms is not None and jitter_ms > delay_ms:
            delay["jitterDurationMilliseconds"] = jitter_ms
        spec["delay"] = delay
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name},
            "spec": spec}


def _is(key: str, *values: str) -> dict[str, object]:
    return {"key": key, "operator": "In", "values": list(values)}


def _not(key: str, *values: str) -> dict[str, object]:
    return {"key": key, "operator": "NotIn", "values": list(values)}


LIVE = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
WAITING = '.status.containerStatuses[0].state.waiting.reason // "none"'
READY = '.status.conditions[]? | select(.type == "Ready") | .status'

# Conditions of a pod that runs but is not ready, and addresses KWOK assigns.
_NOT_READY = """
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "False", reason: ContainersNotReady, lastTransitionTime: {{ $now | Quote }},
         message: 'containers with unready status: [{{ range .spec.containers }}{{ .name }} {{ end }}]'}
      - {type: ContainersReady, status: "False", reason: ContainersNotReady, lastTransitionTime: {{ $now | Quote }}}
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      startTime: {{ or .status.startTime $now | Quote }}
"""


def _pull(reason: str, message: str) -> str:
    return _NOT_READY + f"""
      phase: Pending
      containerStatuses:
      {{{{ range .spec.containers }}}}
      - image: {{{{ .image | Quote }}}}
        name: {{{{ .name | Quote }}}}
        ready: false
        restartCount: 0
        started: false
        state:
          waiting:
            reason: {reason}
            message: {{{{ printf "{message}" .image | Quote }}}}
      {{{{ end }}}}
"""


_CRASH = _NOT_READY + """
      phase: Running
      containerStatuses:
      {{ $restarts := 0 }}{{ with .status.containerStatuses }}{{ $restarts = (index . 0).restartCount }}{{ end }}
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: {{ add $restarts 1 }}
        started: false
        lastState:
          terminated: {exitCode: 1, reason: Error, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
        state:
          waiting:
            reason: CrashLoopBackOff
            message: back-off restarting failed container
      {{ end }}
"""

_READY = """
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ or .status.startTime $now | Quote }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
"""

# KWOK's node stages (kustomize/stage/node/fast/node-initialize.yaml and
# heartbeat-with-lease/node-heartbeat-with-lease.yaml of sigs.k8s.io/kwok v0.8), verbatim
# in substance: nodes get their Ready condition, addresses and capacity once.

# The node's allocatable and capacity: what it reports, else a node too large to fill.
_RESOURCES = """
      %(field)s:
      {{ with .status.%(field)s }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}"""
_NODE_CONDITIONS = """
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}
      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}"""
_NODE_INFO = """
      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        bootID: ""
        machineID: ""
        osImage: ""
        systemUUID: ""
      phase: Running
"""
_NODE_STATUS = (_NODE_CONDITIONS + _RESOURCES % {"field": "allocatable"}
                + _RESOURCES % {"field": "capacity"} + _NODE_INFO)


# The kubelet's events for these states (KWOK's event messages are fixed strings: they
# cannot name the image as the kubelet's do).
_NOT_FOUND = "rpc error: code = NotFound desc = failed to pull and unpack image %q: not found"
_PULL_FAILED = {"type": "Warning", "reason": "Failed",
                "message": "Failed to pull image: rpc error: code = NotFound desc = not found"}
_PULL_BACKOFF = {"type": "Normal", "reason": "BackOff", "message": "Back-off pulling image"}
_CRASH_BACKOFF = {"type": "Warning", "reason": "BackOff",
                  "message": "Back-off restarting failed container"}


def config(readiness_delay: float, jitter: float, never_pull: Iterable[str],
           crash: Iterable[str]) -> list[dict[str, object]]:
    """The KWOK configuration documents (Stages) for one cluster's settings."""
    never_pull, crash = tuple(never_pull), tuple(crash)
    pulls, crashes = _matches_jq(never_pull), _matches_jq(crash)
    delay_ms = int(readiness_delay * 1000)
    fail_fast = min(300, delay_ms)
    docs = [
        _stage("node-initialize", "Node",
               [_not('.status.conditions[]? | select(.type == "Ready") | .status', "True")],
               {"statusTemplate": _NODE_STATUS}),
        _stage("node-heartbeat", "Node",
               [_is(".status.phase", "Running"),
                _is('.status.conditions[]? | select(.type == "Ready") | .status', "True")],
               {"statusTemplate": _NODE_STATUS}, 600000, 610000),
        _stage("pod-delete", "Pod",
               [{"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".metadata.finalizers", "operator": "DoesNotExist"}],
               {"delete": True}, 200),
        _stage("pod-ready", "Pod",
               [LIVE, _is(pulls, "no"), _is(crashes, "no"), _not(READY, "True")],
               {"statusTemplate": _READY}, delay_ms, int((readiness_delay + jitter) * 1000)),
    ]
    if never_pull:
        docs += [
            _stage("pod-err-image-pull", "Pod",
                   [LIVE, _is(pulls, "yes"), _not(WAITING, "ErrImagePull", "ImagePullBackOff")],
                   {"statusTemplate": _pull("ErrImagePull", _NOT_FOUND), "event": _PULL_FAILED},
                   fail_fast),
            _stage("pod-image-pull-backoff", "Pod",
                   [LIVE, _is(pulls, "yes"), _is(WAITING, "ErrImagePull")],
                   {"statusTemplate": _pull("ImagePullBackOff", "Back-off pulling image %q"),
                    "event": _PULL_BACKOFF}, 1000),
            _stage("pod-image-pull-retry", "Pod",
                   [LIVE, _is(pulls, "yes"), _is(WAITING, "ImagePullBackOff")],
                   {"statusTemplate": _pull("ErrImagePull", _NOT_FOUND), "event": _PULL_FAILED},
                   5000),
        ]
    if crash:
        docs.append(_stage("pod-crash-loop", "Pod", [LIVE, _is(pulls, "no"), _is(crashes, "yes")],
                           {"statusTemplate": _CRASH, "event": _CRASH_BACKOFF}, max(fail_fast, 200),
                           max(fail_fast, 200) + 2000))
    return docs
