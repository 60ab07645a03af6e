"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile by default)."""

from __future__ import annotations

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

_HASHERS = {
    # argon2id, t=3, m=64 MiB, p=4: RFC 9106's second recommended option.
    "default": PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY),
    # Only for the test suite, where hundreds of users are created.
    "fast-insecure-for-tests": PasswordHasher.from_parameters(profiles.CHEAPEST),
}

MIN_PASSWORD_LENGTH = 12


def hasher(profile: str = "default") -> PasswordHasher:
    return _HASHERS[profile]


def hash_password(password: str, profile: str = "default") -> str:
    return hasher(profile).hash(password)


def verify_password(password_hash: str, password: str, profile: str = "default") -> bool:
    """Constant-time check; any malformed hash simply fails."""
    try:
        return hasher(profile).verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str, profile: str = "default") -> bool:
    return hasher(profile).check_needs_rehash(password_hash)


def password_problems(password: str) -> list[str]:
    """Reasons a new password is refused (empty list when it is acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        problems.append("must be at most 1024 characters")
    return problems
