"""The gossip keyring: AES-GCM encryption of packets and streams.

Theory of operation (spec: gossip-wire.md section 5; memberlist ``security.go``,
``keyring.go``). A keyring is an ordered list of raw AES keys of 16, 24 or 32
bytes; the first is the primary. Everything we send is encrypted with the primary
only; everything we receive is tried against every key in order and the first
that authenticates wins, so a key can be rolled through a cluster (install, use,
remove) without a gap.

An encrypted blob is ``[version u8][nonce 12][ciphertext || tag 16]``:

* version 1 (every serf agent): the plaintext is sealed as is, 29 bytes overhead;
* version 0 (memberlist protocol 1): the plaintext is first padded PKCS#7-style to
  a multiple of 16 (1..16 bytes, each holding the pad length), up to 45 bytes
  overhead.

The associated data is empty for UDP packets and the 5-byte ``[10][len u32]``
header for streams; the caller passes it. Nonces come from the injected
``entropy`` callable (``os.urandom`` in the agent, a seeded generator in the
simulator). The keyring owns the key list only; a peer's bad blob raises
``RemoteProtocolError(reason="decrypt")``, our own bad key raises ``ConfigError``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, RemoteProtocolError

__all__ = ["Keyring", "ENCRYPT_OVERHEAD_V0", "ENCRYPT_OVERHEAD_V1", "NONCE_BYTES", "decode_base64_key", "validate_key"]

NONCE_BYTES = 12
_TAG_BYTES = 16
_BLOCK_BYTES = 16
ENCRYPT_OVERHEAD_V1 = 1 + NONCE_BYTES + _TAG_BYTES  # 29
ENCRYPT_OVERHEAD_V0 = ENCRYPT_OVERHEAD_V1 + _BLOCK_BYTES  # 45: at most a whole pad block
_KEY_SIZES = (16, 24, 32)


def validate_key(key: bytes) -> bytes:
    """Return ``key`` as bytes if it is a valid AES key (16, 24 or 32 bytes).

    Raises:
        ConfigError: any other length or type.
    """
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise ConfigError(f"key must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) not in _KEY_SIZES:
        raise ConfigError(f"key must be 16, 24 or 32 bytes, not {len(key)}")
    return key


class Keyring:
    """An ordered set of AES keys; ``keys[0]`` is the primary.

    Args:
        keys: raw keys, the primary first; duplicates are dropped.
        entropy: returns that many random bytes (nonces).

    Raises:
        ConfigError: empty list, or a key that is not 16/24/32 bytes.
    """

    def __init__(self, keys: Sequence[bytes], entropy: Callable[[int], bytes]) -> None:
        if not keys:
            raise ConfigError("a keyring needs at least one key")
        ordered: list[bytes] = []
        for key in keys:
            key = validate_key(key)
            if key not in ordered:
                ordered.append(key)
        self._keys: tuple[bytes, ...] = tuple(ordered)
        self._ciphers: dict[bytes, AESGCM] = {}
        self._entropy = entropy

    @classmethod
    def from_base64(cls, keys: Sequence[str], entropy: Callable[[int], bytes]) -> Keyring:
        """Build a keyring from standard base64 strings (``serf agent -encrypt``).

        Raises:
            ConfigError: bad base64 or a decoded key of the wrong length.
        """
        return cls([decode_base64_key(text) for text in keys], entropy)

    @property
    def keys(self) -> tuple[bytes, ...]:
        """All keys, the primary first."""
        return self._keys

    @property
    def primary(self) -> bytes:
        """The key everything is encrypted with."""
        return self._keys[0]

    def install(self, key: bytes) -> None:
        """Add ``key`` after the existing keys; installing a known key does nothing."""
        key = validate_key(key)
        if key not in self._keys:
            self._keys = self._keys + (key,)

    def use(self, key: bytes) -> None:
        """Make an installed ``key`` the primary.

        Raises:
            ConfigError: the key is not installed.
        """
        key = validate_key(key)
        if key not in self._keys:
            raise ConfigError("requested key is not in the keyring")
        self._keys = (key,) + tuple(k for k in self._keys if k != key)

    def remove(self, key: bytes) -> None:
        """Drop ``key``; removing a key that is not installed does nothing.

        Raises:
            ConfigError: ``key`` is the primary.
        """
        key = validate_key(key)
        if key == self.primary:
            raise ConfigError("removing the primary key is not allowed")
        self._keys = tuple(k for k in self._keys if k != key)
        self._ciphers.pop(key, None)

    def encrypt(self, plaintext: bytes, aad: bytes = b"", version: int = 1) -> bytes:
        """Seal ``plaintext`` with the primary key: ``[version][nonce][ct+tag]``.

        Args:
            plaintext: the packet or stream payload.
            aad: associated data (empty for UDP, the 5-byte header for streams).
            version: 1 (no padding, what serf sends) or 0 (PKCS#7 padded).
        """
        if version not in (0, 1):
            raise ValueError(f"encryption version {version} is not 0 or 1")
        nonce = bytes(self._entropy(NONCE_BYTES))
        assert len(nonce) == NONCE_BYTES, "entropy returned the wrong number of bytes"
        source = bytes(plaintext)
        if version == 0:
            pad = _BLOCK_BYTES - len(source) % _BLOCK_BYTES
            source += bytes((pad,)) * pad
        sealed = self._cipher(self.primary).encrypt(nonce, source, bytes(aad) or None)
        return bytes((version,)) + nonce + sealed

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Open a blob with the first key that authenticates it.

        Raises:
            RemoteProtocolError: reason ``"decrypt"`` (empty, unknown version, too
                short, no key fits, bad padding).
        """
        blob = bytes(blob)
        if not blob:
            raise RemoteProtocolError("cannot decrypt an empty payload", reason="decrypt")
        version = blob[0]
        if version > 1:
            raise RemoteProtocolError(f"unsupported encryption version {version}", reason="decrypt")
        minimum = ENCRYPT_OVERHEAD_V1 if version == 1 else ENCRYPT_OVERHEAD_V0
        if len(blob) < minimum:
            raise RemoteProtocolError(f"encrypted payload of {len(blob)} bytes is too small",
                                      reason="decrypt")
        nonce = blob[1:1 + NONCE_BYTES]
        sealed = blob[1 + NONCE_BYTES:]
        for key in self._keys:
            try:
                plain = self._cipher(key).decrypt(nonce, sealed, bytes(aad) or None)
            except InvalidTag:
                continue
            return _strip_padding(plain) if version == 0 else plain
        raise RemoteProtocolError("no installed key decrypts the payload", reason="decrypt")

    def _cipher(self, key: bytes) -> AESGCM:
        cipher = self._ciphers.get(key)
        if cipher is None:
            cipher = self._ciphers[key] = AESGCM(key)
        return cipher


def decode_base64_key(text: str) -> bytes:
    """Decode one standard-base64 key and check its length.

    Raises:
        ConfigError: bad base64 or a key that is not 16/24/32 bytes.
    """
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ConfigError(f"key is not valid base64: {exc}") from None
    return validate_key(key)


def _strip_padding(plain: bytes) -> bytes:
    """Remove version-0 PKCS#7 padding; a pad byte outside 1..16 is a peer error."""
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= _BLOCK_BYTES or pad > len(plain):
        raise RemoteProtocolError(f"bad version-0 padding byte {pad}", reason="decrypt")
    return plain[:-pad]
