"""The cluster driver: everything a release does to one cluster, through its own client.

`ClusterDriver` knows one app in one namespace of one cluster. It reads the live
Deployment (version, revision, the release annotations), ensures the namespace,
server-side applies rendered objects as field manager `release-console` (the
Deployment annotated with version, release id and the version it replaced), follows the
rollout with watches pinned to the generation the apply produced, fails fast on pods
that cannot pull or keep crashing, verifies the pods at the end, and rolls back - to the
pod template the cluster ran before, to a ReplicaSet revision, or by deleting a
Deployment the release created.

Following a rollout opens two watches (the Deployment by name, its pods by selector):
one thread for the whole process (`console.kube.watch_hub`) reads every open stream,
and one (`console.kube.following`) decides every rollout from their events; the
calling thread waits for the verdict. Watches resume from the last resourceVersion and
re-list after 410 Gone; a cluster that stops answering for longer than
`unreachable_grace` fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from console.kube.client import ClusterError, KubeClient
# Re-exported: the records and image helpers lived here, and callers import them from here.
from console.kube.deployment import (LiveDeployment, Progress, Revision,  # noqa: F401
                                     _container_image, _template_images, image_digest,
                                     image_tag, selector_string)
# Re-exported: callers catch RolloutInterrupted and tune the polls from here.
from console.kube.following import (CANCEL_POLL, POD_SETTLE, WOKEN_POLL,  # noqa: F401
                                    Following, RolloutInterrupted)
from console.kube.rollout import (REVISION_ANNOTATION, RolloutStatus, pod_problems,
                                  verify_pods)
from console.kube.writes_first import WRITES

FIELD_MANAGER = "release-console"
ANNOTATION_PREFIX = "release-console.io/"
ANN_VERSION = ANNOTATION_PREFIX + "version"
ANN_RELEASE = ANNOTATION_PREFIX + "release-id"
ANN_PREVIOUS = ANNOTATION_PREFIX + "previous-version"

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"

# Where each kind a manifest directory may hold lives in the API (namespaced kinds).
RESOURCE_PATHS: Mapping[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"):
        "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    ("networking.k8s.io/v1", "Ingress"): "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
}


class ClusterDriver:
    """One app in one namespace of one cluster."""

    # `install` takes `precondition`: the Deployment's resourceVersion the release read
    # (the Helm driver's helm upgrade cannot carry one).
    installs_on_version = True

    def __init__(self, client: KubeClient, app: str, namespace: str, *,
                 grace: float = 10.0, unreachable_grace: float = 30.0,
                 renderer: Callable[..., Sequence[Mapping[str, Any]]] | None = None) -> None:
        """`renderer(tag, digest)` gives the objects a release of `tag` (pinned to
        `digest` when not None) applies (`prepare`)."""
        self.client = client
        self.renderer = renderer
        # The Helm release revision the last write made (the Helm driver's; None here).
        self.last_revision: int | None = None
        self.cluster = client.cluster
        self.app = app
        self.namespace = namespace
        self.grace = grace
        self.unreachable_grace = unreachable_grace
        # Deployments (by id) whose follow() saw, through its pod watch, every pod of the
        # new template Running and Ready: verify() of that same dict needs no pod list.
        self._verified: set[int] = set()

    # ------------------------------------------------------------------ reads

    @property
    def _deployments(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/deployments"

    def namespace_exists(self, timeout: float | None = None) -> bool:
        """Whether the app's namespace exists."""
        try:
            self.client.request("GET", f"/api/v1/namespaces/{self.namespace}", timeout=timeout)
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def ensure_namespace(self, timeout: float | None = None, client: Any = None) -> bool:
        """Create the namespace when absent; True if it was created. `client`: another
        client of this cluster to make the calls with (one that bounds them: the shard
        board's record, `console.engine.shard_split`)."""
        client = client or self.client
        try:
            client.request("GET", f"/api/v1/namespaces/{self.namespace}", timeout=timeout)
            return False
        except ClusterError as exc:
            if exc.status != 404:
                raise
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER}}}
        try:
            # Safe to retry: a create that went through before its answer was lost comes
            # back as 409, which means "exists" here.
            client.request("POST", "/api/v1/namespaces", {"fieldManager": FIELD_MANAGER},
                           body=body, timeout=timeout)
        except ClusterError as exc:
            if exc.status != 409:  # someone created it meanwhile: fine
                raise
            return False
        return True

    def read_deployment(self, timeout: float | None = None,
                        attempts: int | None = None) -> dict[str, Any] | None:
        """The app's Deployment as a dict, or None when there is none (`timeout` per try,
        `attempts` tries at most: `KubeClient.request`)."""
        try:
            return self.client.request("GET", f"{self._deployments}/{self.app}",
                                       timeout=timeout, attempts=attempts)
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def live(self, timeout: float | None = None) -> LiveDeployment:
        """What the cluster runs now."""
        return self.describe(self.read_deployment(timeout))

    def describe(self, deployment: Mapping[str, Any] | None) -> LiveDeployment:
        """A `LiveDeployment` from a Deployment dict (None: absent)."""
        if not deployment:
            return LiveDeployment(exists=False)
        meta = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        annotations = dict(meta.get("annotations") or {})
        template = spec.get("template") or {}
        image = _container_image(template, self.app)
        revision = annotations.get(REVISION_ANNOTATION)
        replicas = spec.get("replicas")
        return LiveDeployment(
            exists=True, version=image_tag(image), image=image,
            revision=int(revision) if revision and revision.isdigit() else None,
            generation=int(meta.get("generation") or 0),
            desired=replicas if isinstance(replicas, int) else 1,
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            release_id=annotations.get(ANN_RELEASE),
            previous_version=annotations.get(ANN_PREVIOUS),
            annotations=annotations, template=template,
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion") or ""))

    def _selector(self, live: LiveDeployment | None = None) -> str:
        labels = live.selector if live and live.selector else {"app": self.app}
        return selector_string(labels)

    def pods(self, live: LiveDeployment | None = None) -> list[dict[str, Any]]:
        """The app's pods (by the Deployment's selector)."""
        listing = self.client.request("GET", f"/api/v1/namespaces/{self.namespace}/pods",
                                      {"labelSelector": self._selector(live)})
        return list(listing.get("items") or [])

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        """The namespace's most recent events, oldest first."""
        listing = self.client.request("GET", f"/api/v1/namespaces/{self.namespace}/events")
        items = list(listing.get("items") or [])
        items.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime")
                   or (e.get("metadata") or {}).get("creationTimestamp") or "")
        return items[-limit:]

    def revisions(self, live: LiveDeployment | None = None) -> list[Revision]:
        """The Deployment's rollout history, oldest first (as `kubectl rollout history`)."""
        live = live or self.live()
        if not live.exists:
            return []
        listing = self.client.request(
            "GET", f"/apis/apps/v1/namespaces/{self.namespace}/replicasets",
            {"labelSelector": self._selector(live)})
        out: list[Revision] = []
        for rs in listing.get("items") or []:
            meta = rs.get("metadata") or {}
            owned = any(ref.get("controller") and ref.get("uid") == live.uid
                        for ref in meta.get("ownerReferences") or [])
            number = (meta.get("annotations") or {}).get(REVISION_ANNOTATION, "")
            if not owned or not number.isdigit():
                continue
            template = dict((rs.get("spec") or {}).get("template") or {})
            image = _container_image(template, self.app)
            out.append(Revision(int(number), image_tag(image), image,
                                int((rs.get("status") or {}).get("replicas") or 0),
                                meta.get("creationTimestamp", ""), template))
        out.sort(key=lambda r: r.number)
        return out

    # ------------------------------------------------------------------ writes
    # The engine speaks to every driver through prepare/install/undo_to/roll_back_to;
    # the Helm driver (console.kube.helm) answers the same calls with helm.

    def prepare(self, tag: str, digest: str | None = None) -> Sequence[Mapping[str, Any]]:
        """The objects a release of `tag` applies, its image pinned to `digest` when
        given (rendered; touches nothing)."""
        if self.renderer is None:
            raise ClusterError(self.cluster, "no manifests renderer for this driver")
        return self.renderer(tag, digest) if digest else self.renderer(tag)

    def install(self, prepared: Any, annotations: Mapping[str, str],
                precondition: str | None = None) -> dict[str, Any]:
        """Apply what `prepare` gave; the Deployment as stored (its generation pins the rollout).

        `precondition`: the resourceVersion the Deployment must still have (else a
        `ClusterError` with status 409 and nothing written)."""
        return self.apply(prepared, annotations, precondition)

    def undo_to(self, revision: Revision, live: LiveDeployment,
                annotations: Mapping[str, str]) -> dict[str, Any]:
        """Back to an earlier revision of the rollout history."""
        return self.restore(revision.template, live, annotations)

    def roll_back_to(self, before: LiveDeployment,
                     annotations: Mapping[str, str]) -> dict[str, Any] | None:
        """Back to what ran before a release; None when nothing did (the Deployment is
        removed), else the Deployment as written."""
        if not before.exists or before.template is None:
            self.delete_deployment()
            return None
        return self.restore(before.template, self.live(), annotations)

    def apply(self, objects: Sequence[Mapping[str, Any]], annotations: Mapping[str, str],
              precondition: str | None = None) -> dict[str, Any]:
        """Server-side apply `objects` (the Deployment last, carrying `annotations`).

        Returns the Deployment as the server stored it (its generation pins the rollout).
        `precondition`: the Deployment's resourceVersion as the caller read it; a
        resourceVersion in an apply is a precondition on the server (409 Conflict when
        the object changed since), so the caller's read stands for "just before".
        Counted in `WRITES`: rollouts wait for it before opening their watches.
        """
        with WRITES.writing():
            return self._apply(objects, annotations, precondition)

    def _apply(self, objects: Sequence[Mapping[str, Any]], annotations: Mapping[str, str],
               precondition: str | None) -> dict[str, Any]:
        deployment: dict[str, Any] | None = None
        ordered = sorted(objects, key=lambda o: o.get("kind") == "Deployment")
        for obj in ordered:
            body = dict(obj)
            meta = dict(body.get("metadata") or {})
            meta["namespace"] = self.namespace
            is_app = body.get("kind") == "Deployment" and meta.get("name") == self.app
            if is_app:
                meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
                if precondition:
                    meta["resourceVersion"] = precondition
            body["metadata"] = meta
            key = (str(body.get("apiVersion", "")), str(body.get("kind", "")))
            base = RESOURCE_PATHS.get(key)
            if base is None:
                raise ClusterError(self.cluster, f"cannot apply kind {key[1]!r} "
                                   f"({key[0]}): not one the console deploys")
            stored = self.client.request(
                "PATCH", base.format(ns=self.namespace) + f"/{meta.get('name', '')}",
                {"fieldManager": FIELD_MANAGER, "force": True}, body=body,
                content_type=APPLY_CONTENT_TYPE)
            if is_app:
                deployment = stored
        if deployment is None:
            raise ClusterError(self.cluster, f"the manifests hold no Deployment named {self.app!r}")
        return deployment

    def restore(self, template: Mapping[str, Any], live: LiveDeployment,
                annotations: Mapping[str, str]) -> dict[str, Any]:
        """Put `template` back as the pod template (as `kubectl rollout undo` does).

        The controller re-uses the ReplicaSet that already has this template.
        """
        template = dict(template)
        labels = {k: v for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()
                  if k != "pod-template-hash"}
        template["metadata"] = {**(template.get("metadata") or {}), "labels": labels}
        merged = {**live.annotations, **annotations}
        ops = [{"op": "replace", "path": "/spec/template", "value": template},
               {"op": "replace" if live.annotations else "add",
                "path": "/metadata/annotations", "value": merged}]
        return self.client.request("PATCH", f"{self._deployments}/{self.app}",
                                   {"fieldManager": FIELD_MANAGER}, body=ops,
                                   content_type=JSON_PATCH)

    def delete_deployment(self) -> None:
        """Remove the app's Deployment (a first release that failed leaves nothing behind)."""
        try:
            self.client.request("DELETE", f"{self._deployments}/{self.app}",
                                {"propagationPolicy": "Background"})
        except ClusterError as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ following

    def follow(self, deployment: Mapping[str, Any], timeout: float,
               on_progress: Callable[[Progress], None] | None = None,
               cancel: threading.Event | None = None) -> RolloutStatus:
        """Wait until the rollout `deployment` (as stored by our write) is complete.

        Pinned to its generation; fails fast when new pods have a fatal problem for
        longer than `grace`; raises `ClusterError` on failure or timeout and
        `RolloutInterrupted` when `cancel` is set. Returns the final status.
        Decided on the process's rollout thread (`console.kube.following`), which also
        calls `on_progress`; this thread only waits for the verdict.
        """
        following = Following(self, deployment, timeout, on_progress, cancel)
        # Other clusters' applies first (a release's wall time waits for the last one);
        # the watches start from this apply's version, so waiting misses nothing.
        WRITES.wait_quiet()
        return following.wait()

    def verify(self, deployment: Mapping[str, Any]) -> None:
        """After completion: every pod of the new template Running and Ready, enough of them.

        Already so when `follow` of this same Deployment saw it through its pod watch;
        else (or to tell what is wrong) the pods are listed."""
        if id(deployment) in self._verified:
            self._verified.discard(id(deployment))
            return
        spec = deployment.get("spec") or {}
        images = _template_images(spec.get("template") or {})
        replicas = spec.get("replicas")
        desired = replicas if isinstance(replicas, int) else 1
        labels = (spec.get("selector") or {}).get("matchLabels") or {"app": self.app}
        listing = self.client.request("GET", f"/api/v1/namespaces/{self.namespace}/pods",
                                      {"labelSelector": selector_string(labels)})
        pods = list(listing.get("items") or [])
        reason = verify_pods(pods, images, desired)
        if reason:
            problems = [p.describe() for pod in pods for p in pod_problems(pod)]
            extra = f" ({problems[0]})" if problems else ""
            raise ClusterError(self.cluster, f"rollout complete but {reason}{extra}")
