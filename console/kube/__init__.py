"""The cluster driver: one isolated Kubernetes client per cluster, the rollout rules,
and the operations a release makes (apply, watch, verify, rollback, read versions)."""
