"""Tests of the Helm driver (console.kube.helm*) with the real helm binary."""
