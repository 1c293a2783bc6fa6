"""Protocols: how to ask a judge (requests) and how to read its answers (parsing)."""
