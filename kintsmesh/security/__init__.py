"""Trust: the installation's secrets and local CA, PostgreSQL roles, API tokens and the audit chain.

Everything here is generated on the first ``stack up`` into ``.stack/secrets`` (a folder only its owner
can read) and never has a default in the repository; ``docs/security.md`` is the threat model.
"""
