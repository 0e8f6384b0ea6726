"""The actor kernel: actors with mailboxes, OTP supervisors, the registry and the event bus.

It knows nothing of LLMs; the domain (`actors`) stands on it, and an import-linter contract in
`pyproject.toml` keeps it that way.
"""
