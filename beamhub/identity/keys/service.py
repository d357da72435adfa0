"""Users' SSH public keys: parse and validate a key line, keep it, answer an authorized_keys file."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_ssh_public_key
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from beamhub.db import Database
from beamhub.errors import N_, Conflict, Forbidden, Invalid, NotFound
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.keys.models import SshKey
from beamhub.identity.principal import SYSTEM, Principal

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
DSA = "ssh-dss"
ECDSA = ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
ACCEPTED_TYPES = (ED25519, *ECDSA, RSA)
MIN_RSA_BITS = 2048
MAX_COMMENT = 255
EXAMPLE = "ssh-ed25519 AAAAC3Nza... you@laptop"
NOT_A_KEY = N_("not an SSH public key: expected 'type base64 [comment]', like %(example)r")
DSA_REFUSED = N_("DSA keys are not accepted: generate an ed25519 key with ssh-keygen -t ed25519")


@dataclass(frozen=True)
class ParsedKey:
    """A validated public key as OpenSSH would show it."""

    algorithm: str
    bits: int
    fingerprint: str
    public_key: str
    comment: str


def fingerprint_of(blob: bytes) -> str:
    """The SHA256 fingerprint of a key blob, as `ssh-keygen -lf` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def blob_type(blob: bytes) -> str:
    """The key type named at the start of an SSH key blob (a length-prefixed string)."""
    if len(blob) < 4:
        raise Invalid("the key data is too short to be an SSH public key")
    (length,) = struct.unpack(">I", blob[:4])
    if length > 64 or len(blob) < 4 + length:
        raise Invalid("the key data does not start with a key type: is the key complete?")
    return blob[4:4 + length].decode("ascii", errors="replace")


def decode_blob(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("the key data is not valid base64: copy the whole line of the .pub file") from exc


def check_type(algorithm: str) -> None:
    """Refuse key types beamhub does not accept, saying what to use instead."""
    if algorithm == DSA:
        raise Invalid(DSA_REFUSED)
    if algorithm not in ACCEPTED_TYPES:
        raise Invalid("key type %(type)r is not accepted; accepted: %(accepted)s (e.g. ssh-keygen -t ed25519)",
                      type=algorithm, accepted=", ".join(ACCEPTED_TYPES))


def key_bits(key: object) -> int:
    """The size OpenSSH reports for a key: 256 for ed25519, the curve or modulus size otherwise."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 256
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size
    raise Invalid("key type %(type)s is not accepted; accepted: %(accepted)s", type=type(key).__name__,
                  accepted=", ".join(ACCEPTED_TYPES))


def split_line(line: str) -> tuple[str, str, str]:
    """A key line's type, base64 data and comment; refuses what is plainly not a public key."""
    text = line.strip()
    if not text:
        raise Invalid("no SSH public key given; expected a line like %(example)r", example=EXAMPLE)
    if text.startswith("-----BEGIN"):
        raise Invalid("this looks like a private key or a PEM file: give the public key, the one line of the .pub "
                      "file (%(example)r)", example=EXAMPLE)
    if "\n" in text or "\r" in text:
        raise Invalid("give one key per line")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise Invalid(NOT_A_KEY, example=EXAMPLE)
    algorithm, data = parts[0], parts[1]
    if "-" not in algorithm:  # every key type name has one; prose does not
        raise Invalid(NOT_A_KEY, example=EXAMPLE)
    comment = parts[2].strip() if len(parts) == 3 else ""
    return algorithm, data, comment


def parse_public_key(line: str) -> ParsedKey:
    """Validate one OpenSSH public key line (ed25519, ecdsa, rsa >= 2048 bits) and describe it."""
    algorithm, data, comment = split_line(line)
    check_type(algorithm)
    blob = decode_blob(data)
    inner = blob_type(blob)
    if inner != algorithm:
        raise Invalid("the key line says %(type)s but its data is a %(inner)s key: copy the line unchanged from the "
                      ".pub file", type=algorithm, inner=inner)
    try:
        key = load_ssh_public_key(f"{algorithm} {data}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise Invalid("the %(type)s key data is damaged or incomplete: copy the whole line of the .pub file",
                      type=algorithm) from exc
    bits = key_bits(key)
    if algorithm == RSA and bits < MIN_RSA_BITS:
        raise Invalid("this RSA key has %(bits)s bits; at least %(minimum)s are needed (better: ssh-keygen -t "
                      "ed25519)", bits=bits, minimum=MIN_RSA_BITS)
    if len(comment) > MAX_COMMENT:
        raise Invalid("the key's comment is longer than %(maximum)s characters", maximum=MAX_COMMENT)
    canonical = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    _, canonical_data = canonical.split(" ", 1)
    return ParsedKey(algorithm=algorithm, bits=bits, fingerprint=fingerprint_of(base64.b64decode(canonical_data)),
                     public_key=canonical, comment=comment)


def split_keys(text: str) -> list[str]:
    """The key lines of a text holding several keys, one a line; blank lines and '#' comments skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def parse_keys(text: str) -> list[ParsedKey]:
    """Every key of a text, validated; the first bad line is refused, naming its number."""
    lines = split_keys(text)
    parsed = []
    for number, line in enumerate(lines, start=1):
        try:
            parsed.append(parse_public_key(line))
        except Invalid as exc:
            if len(lines) == 1:
                raise
            raise Invalid("key %(number)s of %(count)s: %(reason)s", number=number, count=len(lines),
                          reason=exc) from exc
    return parsed


def check_may_read(by: Principal, username: str) -> None:
    """Only the user themself or an administrator sees or removes a user's keys, with the sessions or keys scope."""
    if by.username != username and not by.is_admin:
        raise Forbidden("only %(user)s or an administrator may manage %(user)s's SSH keys", user=username)
    if not (by.has_scope("sessions") or by.has_scope("keys")):
        raise Forbidden("this token lacks the 'sessions' and 'keys' scopes, so it cannot manage SSH keys")


def check_may_add(by: Principal, username: str) -> None:
    """Adding a key grants SSH access that outlives the credential: it needs the full account or the keys scope."""
    check_may_read(by, username)
    if not by.has_scope("keys"):
        raise Forbidden("adding an SSH key needs a login session, a token without scope limits or one with the "
                        "'keys' scope: a key outlives the token that adds it")


class SshKeyService:
    """Adds, lists and deletes users' SSH public keys, for the principal that asks."""

    def __init__(self, db: Database, identity: IdentityService) -> None:
        self.db = db
        self.identity = identity

    def add_key(self, username: str, line: str, by: Principal) -> SshKey:
        """Add exactly one key; a key the user already has is a Conflict."""
        check_may_add(by, username)
        lines = split_keys(line)
        if len(lines) != 1:
            raise Invalid("give exactly one key, the line of a .pub file, like %(example)r; got %(count)s",
                          example=EXAMPLE, count=len(lines))
        return self.store(username, [parse_public_key(lines[0])], by=by)[0]

    def add_keys(self, username: str, text: str, by: Principal, skip_duplicates: bool = False) -> list[SshKey]:
        """Add every key of `text`, all or none; duplicates are a Conflict unless skipped."""
        return self.store(username, self.validate(username, text, by), by, skip_duplicates)

    def validate(self, username: str, text: str, by: Principal) -> list[ParsedKey]:
        """Parse every key of `text` for a user without keeping any: Forbidden unless `by` may add them (checked
        only when there is a key), Invalid for the first bad one."""
        if split_keys(text):
            check_may_add(by, username)
        return parse_keys(text)

    def store(self, username: str, parsed: list[ParsedKey], by: Principal,
              skip_duplicates: bool = False) -> list[SshKey]:
        """Keep already validated keys for a user, if `by` may add them; returns the keys added."""
        if not parsed:
            return []
        check_may_add(by, username)
        user = self.identity.get_user(username, by=by)
        with self.db.session() as db:
            known = set(db.scalars(select(SshKey.fingerprint).where(SshKey.user_id == user.id)))
            added = []
            for key in parsed:
                if key.fingerprint in known:
                    if skip_duplicates:
                        continue
                    raise Conflict("%(user)s already has the key %(fingerprint)s", user=username,
                                   fingerprint=key.fingerprint)
                known.add(key.fingerprint)
                added.append(SshKey(user_id=user.id, algorithm=key.algorithm, bits=key.bits,
                                    fingerprint=key.fingerprint, public_key=key.public_key, comment=key.comment))
            db.add_all(added)
            for key in added:
                self.identity.audit.add_as(db, by, "sshkey.add", username, fingerprint=key.fingerprint)
            try:
                db.flush()
            except IntegrityError as exc:
                raise Conflict("%(user)s already has one of these keys", user=username) from exc
        return added

    def list_keys(self, username: str, by: Principal) -> list[SshKey]:
        """A user's keys, oldest first, for the user themself or an administrator."""
        check_may_read(by, username)
        return self._keys_of(username)

    def _keys_of(self, username: str) -> list[SshKey]:
        user = self.identity.get_user(username, by=SYSTEM)
        with self.db.session() as db:
            query = select(SshKey).where(SshKey.user_id == user.id).order_by(SshKey.created_at, SshKey.id)
            return list(db.scalars(query))

    def delete_key(self, username: str, key_id: int, by: Principal) -> SshKey:
        """Remove one of a user's keys; returns it."""
        check_may_read(by, username)
        user = self.identity.get_user(username, by=by)
        with self.db.session() as db:
            key = db.get(SshKey, key_id)
            if key is None or key.user_id != user.id:
                raise NotFound("%(user)s has no SSH key %(key)s", user=username, key=key_id)
            db.delete(key)
            self.identity.audit.add_as(db, by, "sshkey.delete", username, fingerprint=key.fingerprint)
        return key

    def authorized_keys(self, username: str) -> str:
        """The user's keys as the lines of an authorized_keys file."""
        lines = [f"{key.public_key} {key.comment}".strip() for key in self._keys_of(username)]
        return "".join(f"{line}\n" for line in lines)
