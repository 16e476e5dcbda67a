"""Fault stories across packages: killed consoles, broken services, secrets, abuse, races."""
