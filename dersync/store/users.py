"""Console users and their sign-in sessions.

A user has a name, a role and an argon2 password hash (made and checked by `dersync.console`;
the store only keeps it, and no reader other than sign-in ever gets it back). A session row is
keyed by the SHA-256 of the cookie's value, so that a copy of the table signs nobody in; it
carries the session's CSRF token and its expiry (absolute, and idle since `last_seen_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dersync.store.tables import console_session, console_user


@dataclass(frozen=True)
class Credentials:
    """What sign-in needs of a user (the hash never leaves sign-in)."""

    name: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class Session:
    id_sha256: str
    user_name: str
    via: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    #: The stored user's role now (None: no such user, as for a proxy user not in the store).
    role: str | None


async def save_user(connection: AsyncConnection, name: str, role: str, password_hash: str | None,
                    now: datetime) -> bool:
    """Create the user or change its role (and its password, when a hash is given); True when it
    was created. A new password ends the user's sessions."""
    existing = (await connection.execute(select(console_user.c.name).where(console_user.c.name == name))).first()
    if existing is None:
        if password_hash is None:
            raise ValueError("a new user needs a password")
        await connection.execute(console_user.insert().values(name=name, role=role, password_hash=password_hash,
                                                               created_at=now, updated_at=now))
        return True
    values: dict[str, Any] = {"role": role, "updated_at": now}
    if password_hash is not None:
        values["password_hash"] = password_hash
        await connection.execute(delete(console_session).where(console_session.c.user_name == name))
    await connection.execute(update(console_user).where(console_user.c.name == name).values(**values))
    return False


async def credentials(connection: AsyncConnection, name: str) -> Credentials | None:
    row = (await connection.execute(
        select(console_user.c.name, console_user.c.role, console_user.c.password_hash)
        .where(console_user.c.name == name))).first()
    return Credentials(row.name, row.role, row.password_hash) if row is not None else None


async def list_users(connection: AsyncConnection) -> list[dict[str, Any]]:
    """Users by name: name, role, created, updated (never the hash)."""
    rows = await connection.execute(
        select(console_user.c.name, console_user.c.role, console_user.c.created_at, console_user.c.updated_at)
        .order_by(console_user.c.name))
    return [{"name": r.name, "role": r.role, "created": utc(r.created_at), "updated": utc(r.updated_at)}
            for r in rows]


async def remove_user(connection: AsyncConnection, name: str) -> bool:
    """Remove the user and end its sessions; False when there was no such user."""
    await connection.execute(delete(console_session).where(console_session.c.user_name == name))
    result = await connection.execute(delete(console_user).where(console_user.c.name == name))
    return bool(result.rowcount)


async def create_session(connection: AsyncConnection, session: Session) -> None:
    await connection.execute(console_session.insert().values(
        id_sha256=session.id_sha256, user_name=session.user_name, via=session.via, csrf_token=session.csrf_token,
        created_at=session.created_at, last_seen_at=session.last_seen_at, expires_at=session.expires_at))


async def session(connection: AsyncConnection, id_sha256: str) -> Session | None:
    """The session with the user's current role (None when the user is no longer in the store)."""
    row = (await connection.execute(
        select(console_session, console_user.c.role)
        .select_from(console_session.outerjoin(console_user, console_user.c.name == console_session.c.user_name))
        .where(console_session.c.id_sha256 == id_sha256))).first()
    if row is None:
        return None
    m = row._mapping
    return Session(m["id_sha256"], m["user_name"], m["via"], m["csrf_token"], utc(m["created_at"]),
                   utc(m["last_seen_at"]), utc(m["expires_at"]), m["role"])


async def touch_session(connection: AsyncConnection, id_sha256: str, now: datetime) -> None:
    await connection.execute(update(console_session).where(console_session.c.id_sha256 == id_sha256)
                             .values(last_seen_at=now))


async def end_session(connection: AsyncConnection, id_sha256: str) -> None:
    await connection.execute(delete(console_session).where(console_session.c.id_sha256 == id_sha256))


async def end_expired_sessions(connection: AsyncConnection, now: datetime, idle_before: datetime) -> int:
    result = await connection.execute(delete(console_session).where(
        (console_session.c.expires_at <= now) | (console_session.c.last_seen_at < idle_before)))
    return result.rowcount or 0


def utc(value: datetime) -> datetime:
    """SQLite hands times back naive; they are stored in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
