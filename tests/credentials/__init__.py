"""Tests of console.credentials: kubeconfig sources and rules, Vault/OpenBao, pre-flight's credential checks."""
