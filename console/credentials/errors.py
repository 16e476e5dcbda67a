"""`CredentialsError`: a cluster's credentials could not be had or were refused."""

from __future__ import annotations

from console.errors import UserError


class CredentialsError(UserError):
    """A cluster's credentials could not be had or were refused.

    The message names the cluster and the source (file path, variable name, Vault path);
    it never holds a token, a key or any part of a kubeconfig.
    """

    def __init__(self, cluster: str, source: str, problem: str) -> None:
        super().__init__(f"cluster {cluster!r}: credentials from {source}: {problem}")
        self.cluster = cluster
        self.source = source
        self.problem = problem
