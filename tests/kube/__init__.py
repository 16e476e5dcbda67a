"""Tests of console.kube: the client's error descriptions and the private files of credentials."""
