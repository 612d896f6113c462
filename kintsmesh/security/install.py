"""``kintsmesh secrets init``: every secret of an installation at once, before anything starts (the local
stack makes each on first use; docker-compose reads them as files, so they must exist before
``docker compose up``)."""

from __future__ import annotations

from kintsmesh.security.kafka import principals
from kintsmesh.security.pki import LOCAL_HOSTS, certificate_authority, server_certificate
from kintsmesh.security.postgres import roles
from kintsmesh.security.tokens import signing_key
from kintsmesh.settings import Settings

SERVERS = {"postgres": False, "kafka-broker": True, "registry": False, "api": False}   # name: also a client cert
OTHER_SECRETS = ("connect-rest-admin", "connect-rest-monitor", "subscription-headers", "grafana-admin")


def initialise(settings: Settings, hosts: tuple[str, ...] = LOCAL_HOSTS) -> list[str]:
    """Create whatever is missing (nothing existing is replaced); returns the file names of the folder."""
    folder = settings.secrets_dir
    certificate_authority(folder)
    for name, client_auth in SERVERS.items():
        server_certificate(folder, name, tuple(dict.fromkeys((*LOCAL_HOSTS, *hosts))), client_auth=client_auth)
    signing_key(folder)
    settings.role_password("admin")
    for role in roles():
        settings.role_password(role.name)
    for principal in [*principals(), "admin"]:
        settings.kafka_password(principal)
    for name in OTHER_SECRETS:
        settings.secret(name)
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
