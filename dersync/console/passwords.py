"""Console passwords: argon2id hashes from a maintained package (argon2-cffi), made and checked
off the event loop (a check costs tens of milliseconds of CPU, which would stall `/healthz`)."""

from __future__ import annotations

import asyncio
import functools
import re
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dersync.settings import MIN_PASSWORD_LENGTH

#: RFC 9106's second recommended option (argon2id, 64 MiB, 3 passes): argon2-cffi's defaults.
_HASHER = PasswordHasher()
#: Names a user can be given in the store (and typed in a Basic credential: no colon, no blank).
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
#: Longest password accepted (argon2 takes any length; this bounds the work one request can ask).
MAX_PASSWORD_LENGTH = 1024


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a stored user's name, or None."""
    if USER_NAME.match(name):
        return None
    return ("a user name is 1 to 64 letters, digits and . _ @ + - (starting with a letter or digit), "
            f"not {name!r}")


def password_problem(password: str) -> str | None:
    """Why `password` is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password has at most {MAX_PASSWORD_LENGTH} characters"
    if any(unicodedata.category(character) == "Cc" for character in password):
        return "a password cannot hold control characters (a pasted line end, a tab)"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (no such user) the same work is done and False
    returned."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    return await asyncio.to_thread(_verify, password_hash, password)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user does not exist, so that an unknown name costs as long as a
    wrong password (the answer's timing does not tell which names exist). Made on first need,
    not at import: it costs a hash's time and memory."""
    return _HASHER.hash("dersync: no such user, but the same work")


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

