"""Secrets shared by every credential kind: `<prefix><random base62><checksum>`.

The checksum lets us reject a mistyped secret without touching the database; only the SHA-256 of
the whole secret is stored, and the secret itself is shown exactly once.
"""

import hashlib
import hmac
import secrets
import string
import zlib

ALPHABET = string.digits + string.ascii_letters  # base62
RANDOM_LENGTH = 40
CHECKSUM_LENGTH = 6
DISPLAY_PREFIX_LENGTH = 8  # random characters kept (with the kind prefix) to recognise a key in lists


def _base62(number, width):
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(body):
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate(*, prefix):
    """Return a new secret for the given kind prefix (e.g. "sk_live_", "dk_")."""
    body = prefix + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + _checksum(body)


def is_well_formed(*, secret, prefix):
    """Cheap offline check: right prefix, length, alphabet and checksum."""
    if not isinstance(secret, str) or not secret.startswith(prefix):
        return False
    if len(secret) != len(prefix) + RANDOM_LENGTH + CHECKSUM_LENGTH:
        return False
    body, checksum = secret[:-CHECKSUM_LENGTH], secret[-CHECKSUM_LENGTH:]
    if any(c not in ALPHABET for c in body[len(prefix):] + checksum):
        return False
    return hmac.compare_digest(_checksum(body), checksum)


def hash_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(*, secret, prefix):
    return secret[: len(prefix) + DISPLAY_PREFIX_LENGTH]


def matches(*, secret, secret_hash):
    return hmac.compare_digest(hash_secret(secret), secret_hash)
