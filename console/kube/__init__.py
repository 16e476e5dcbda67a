"""The cluster driver: one isolated Kubernetes client per cluster, the rollout rules,
and the operations a release makes (apply, watch, verify, rollback, read versions).

Modules:

- `client` - `KubeClient`, one cluster's API client speaking raw JSON: the one call path
  (timeouts, bounded retries, TLS), `ClusterError`.
- `tls_contexts` - one shared TLS context per (verify mode, CA, client certificate).
- `private_files` - the console's private directory for the files a client needs.
- `driver` - `ClusterDriver`: everything a release does to one cluster (manifests by
  server-side apply); `drivers` - `make_driver`, the choice between it and Helm.
- `deployment` - what the console reads of a Deployment (live state, revisions,
  progress); `rollout` - the `kubectl rollout status` rules as pure functions.
- `helm` - `HelmDriver`, the app shipped as a chart; `helm_cli` - running the helm
  binary per cluster; `helm_login` - the login for an `oci://` chart registry;
  `helm_storage` - Helm's release history read from its storage in the cluster.
- `following` - one thread deciding every followed rollout (`Following`, `RolloutLoop`).
- Watches: `watch_hub` (one thread reading every rollout's watch stream),
  `watch_reader` (one watch on its own small thread: Leases), `watch_feed` (what the two
  share), `open_gate` (how many watches open at once), `opener_pool` (the threads that
  open them for the rollout thread), `writes_first` (a release's
  applies ahead of its watches), `waking` (waits that wake instead of polling).
"""
