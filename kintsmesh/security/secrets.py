"""Per-installation secrets: random values created on first use in the secrets folder (``.stack/secrets``,
mode 0700, files 0600), read back afterwards. A deployment may put its own files there (docker / Kubernetes secrets)."""

from __future__ import annotations

import os
import secrets as random
from pathlib import Path

from kintsmesh.errors import StackError


def private_folder(folder: Path) -> Path:
    """``folder`` (the installation's secrets), created if need be, readable by its owner only."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only, atomically (another process never reads half of it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{random.token_hex(4)}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def create_once(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) with ``data`` unless it exists: of two processes creating it at once, one wins
    and both then read its value (a hard link is atomic and refuses to replace)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{random.token_hex(4)}")
    write_private(partial, data)
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink()


def secret(folder: Path, name: str, nbytes: int = 24) -> str:
    """The secret ``name`` of this installation (kept in ``folder``), generated the first time it is asked for."""
    path = private_folder(folder) / name
    if not path.exists():
        create_once(path, random.token_urlsafe(nbytes).encode())
    value = path.read_text().strip()
    if not value:
        raise StackError("secrets", f"{path} is empty; delete it to have a new one generated")
    return value
