"""gossip.keyring: AES-GCM blobs of versions 0 and 1, key rotation, and refusal reasons (spec section 5)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from gossip.errors import ConfigError, RemoteProtocolError
from gossip.keyring import ENCRYPT_OVERHEAD_V0, ENCRYPT_OVERHEAD_V1, Keyring

KEY1_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
KEY2_B64 = "QEFCQ0RFRkdISUpLTE1OTw=="
KEY1, KEY2 = bytes(range(32)), bytes(range(0x40, 0x50))
KEY3 = bytes(range(100, 124))
NONCE = bytes(range(200, 212))


def fixed_entropy(count: int) -> bytes:
    assert count == 12
    return NONCE


def ring(*keys: bytes) -> Keyring:
    return Keyring(list(keys), fixed_entropy)


def test_from_base64_decodes_the_vector_keys() -> None:
    """KEY1 (AES-256) and KEY2 (AES-128) of the vectors README decode to 00..1f and 40..4f."""
    keyring = Keyring.from_base64([KEY1_B64, KEY2_B64], fixed_entropy)
    assert keyring.keys == (KEY1, KEY2) and keyring.primary == KEY1


@pytest.mark.parametrize("keys", [[], [b"short"], [bytes(17)], [KEY1, bytes(31)], ["not bytes"]])
def test_bad_keys_are_config_errors(keys) -> None:
    """An empty list or a key that is not 16/24/32 bytes fails at construction."""
    with pytest.raises(ConfigError):
        Keyring(keys, fixed_entropy)


@pytest.mark.parametrize("text", ["not base64!", "AAAA", KEY1_B64[:-2]])
def test_bad_base64_is_a_config_error(text: str) -> None:
    """Bad base64 or a decoded length other than 16/24/32 raises ConfigError."""
    with pytest.raises(ConfigError):
        Keyring.from_base64([text], fixed_entropy)


def test_version_1_layout() -> None:
    """Version 1 is [1][nonce][AES-GCM(plaintext)+tag], 29 bytes longer than the plaintext."""
    blob = ring(KEY1).encrypt(b"hello", aad=b"hdr")
    assert len(blob) == 5 + ENCRYPT_OVERHEAD_V1 == 34
    assert blob[0] == 1 and blob[1:13] == NONCE
    assert blob[13:] == AESGCM(KEY1).encrypt(NONCE, b"hello", b"hdr")


@pytest.mark.parametrize(("size", "pad"), [(0, 16), (5, 11), (15, 1), (16, 16), (17, 15)])
def test_version_0_pads_pkcs7(size: int, pad: int) -> None:
    """Version 0 pads to a multiple of 16 with 1..16 bytes equal to the pad length, and strips it again."""
    plaintext = bytes(range(size))
    blob = ring(KEY2).encrypt(plaintext, version=0)
    assert blob[0] == 0 and len(blob) == 1 + 12 + size + pad + 16
    assert AESGCM(KEY2).decrypt(NONCE, blob[13:], None) == plaintext + bytes([pad]) * pad
    assert ring(KEY2).decrypt(blob) == plaintext
    assert len(blob) - size <= ENCRYPT_OVERHEAD_V0


def test_encrypts_with_primary_and_decrypts_with_any_key() -> None:
    """The primary seals; every installed key is tried in turn to open."""
    sealed_by_key2 = ring(KEY2).encrypt(b"payload")
    assert ring(KEY1, KEY3, KEY2).decrypt(sealed_by_key2) == b"payload"
    with pytest.raises(RemoteProtocolError) as error:
        ring(KEY1, KEY3).decrypt(sealed_by_key2)
    assert error.value.reason == "decrypt"


def test_aad_must_match() -> None:
    """A blob sealed with the stream header as AAD does not open without it."""
    blob = ring(KEY1).encrypt(b"x", aad=b"\x0a\x00\x00\x00\x1e")
    with pytest.raises(RemoteProtocolError):
        ring(KEY1).decrypt(blob)
    assert ring(KEY1).decrypt(blob, aad=b"\x0a\x00\x00\x00\x1e") == b"x"


@pytest.mark.parametrize("blob", [
    b"",  # empty
    b"\x02" + bytes(40),  # unknown version
    b"\x01" + bytes(27),  # shorter than 29
    b"\x00" + bytes(43),  # shorter than 45
    b"\x01" + bytes(40),  # no key authenticates it
])
def test_bad_blobs_raise_decrypt(blob: bytes) -> None:
    """Empty, unknown-version, too-short and unauthentic blobs raise reason "decrypt"."""
    with pytest.raises(RemoteProtocolError) as error:
        ring(KEY1).decrypt(blob)
    assert error.value.reason == "decrypt"


@pytest.mark.parametrize("last", [0, 17, 200])
def test_bad_version_0_padding_raises_decrypt(last: int) -> None:
    """An authentic version-0 blob whose pad byte is outside 1..16 is refused."""
    padded = bytes(15) + bytes([last])
    blob = b"\x00" + NONCE + AESGCM(KEY1).encrypt(NONCE, padded, None)
    with pytest.raises(RemoteProtocolError) as error:
        ring(KEY1).decrypt(blob)
    assert error.value.reason == "decrypt"


def test_install_use_remove() -> None:
    """install appends once, use makes a key primary, remove drops a secondary but never the primary."""
    keyring = ring(KEY1)
    keyring.install(KEY2)
    keyring.install(KEY2)
    assert keyring.keys == (KEY1, KEY2)
    keyring.use(KEY2)
    assert keyring.keys == (KEY2, KEY1) and keyring.primary == KEY2
    assert keyring.encrypt(b"m")[13:] == AESGCM(KEY2).encrypt(NONCE, b"m", None)
    with pytest.raises(ConfigError):
        keyring.remove(KEY2)
    keyring.remove(KEY1)
    keyring.remove(KEY3)  # not installed: nothing happens
    assert keyring.keys == (KEY2,)
    with pytest.raises(ConfigError):
        keyring.use(KEY1)
    with pytest.raises(ConfigError):
        keyring.install(b"bad")


@given(st.binary(max_size=300), st.binary(max_size=10), st.sampled_from([0, 1]),
       st.sampled_from([KEY1, KEY2, KEY3]))
def test_round_trip(plaintext: bytes, aad: bytes, version: int, key: bytes) -> None:
    """encrypt then decrypt gives the plaintext for both versions and every key size."""
    keyring = Keyring([KEY1, KEY2, KEY3], fixed_entropy)
    keyring.use(key)
    assert keyring.decrypt(keyring.encrypt(plaintext, aad=aad, version=version), aad=aad) == plaintext
