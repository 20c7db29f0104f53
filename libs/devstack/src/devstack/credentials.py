"""Passwords of the throwaway cluster: generated once, kept in `.devstack/credentials.json` (0600)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from tenantschema import roles

from devstack.errors import DevstackError

SUPERUSER = "postgres"
OWNER_ROLE = roles.OWNER_ROLE
APP_ROLE = roles.APP_GROUP
RELAY_ROLE = roles.RELAY_ROLE
# Not a role: the secret dedicated databases' role passwords are derived from (tenantdb.placement).
DEDICATED_SECRET = "dedicated_password_secret"
# One login role per service (tenantschema.roles), each with a password of its own.
SERVICE_ROLES = tuple(role.name for role in roles.SERVICE_ROLES)
_ROLES = (SUPERUSER, OWNER_ROLE, APP_ROLE, RELAY_ROLE, DEDICATED_SECRET, *SERVICE_ROLES)


@dataclass(frozen=True)
class Credentials:
    passwords: dict[str, str]

    def password(self, role: str) -> str:
        return self.passwords[role]


def _generate() -> dict[str, str]:
    return {role: secrets.token_urlsafe(24) for role in _ROLES}


def load_or_create(path: Path) -> Credentials:
    """Read the persisted passwords, creating (and persisting) missing ones."""
    passwords: dict[str, str] = {}
    if path.exists():
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DevstackError(
                f"cannot read {path}: {exc}; delete it together with the stack (make clean)"
            ) from None
        if not isinstance(raw, dict):
            raise DevstackError(
                f"{path} is not a JSON object; delete it together with the stack (make clean)"
            )
        passwords = {str(k): str(v) for k, v in raw.items()}
    missing = [role for role in _ROLES if not passwords.get(role)]
    if missing:
        fresh = _generate()
        passwords.update({role: fresh[role] for role in missing})
        _write(path, passwords)
    return Credentials(passwords)


def exists(path: Path) -> bool:
    return path.is_file()


def _write(path: Path, passwords: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
