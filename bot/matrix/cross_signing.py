"""Cross-signing of the bot's own device (matrix-nio has none).

Why: Element and Tchap (matrix-js-sdk with Rust crypto) show a red shield on messages from a
device its owner has not cross-signed, and with "exclude insecure devices" (MSC4153) they
withhold room keys from it and refuse its messages. So the bot creates a cross-signing identity
once (master, self-signing and user-signing ed25519 keys), uploads it, and signs its device with
the self-signing key.

The identity is permanent: the private keys live in the crypto store folder (0600, JSON) and are
reused at every start. A master key on the server that we do not hold is never replaced
silently — only an administrator can decide to reset the account's identity.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt
from Crypto.PublicKey.ECC import EccKey
from Crypto.Signature import eddsa

log = structlog.get_logger(__name__)

KEYS_FILE_NAME = "cross_signing_keys.json"
KEYS_FILE_VERSION = 1
USAGES = ("master", "self_signing", "user_signing")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1  # ~50 ms once per start; slows guessing
GCM_TAG_BYTES = 16  # appended to the ciphertext, as AES-GCM implementations usually store it

JsonDict = dict[str, Any]
HttpCall = Callable[[str, str, JsonDict | None], Awaitable[tuple[int, JsonDict]]]
"""`(method, path, json_body) -> (http_status, json_response)`, authenticated as the bot."""
DeviceSigner = Callable[[str], str]
"""Signs a canonical JSON string with the device's ed25519 key (nio's OlmAccount.sign)."""


class CrossSigningStatus(StrEnum):
    CREATED = "created"  # new identity made and uploaded now (first start)
    READY = "ready"  # identity and device signature already in place, or repaired
    NEEDS_PASSWORD = "needs_password"  # the server demands a password (UIA) we do not have
    CONFLICT = "conflict"  # the server has a master key we do not hold: admin must reset
    FAILED = "failed"  # transport or server error: retried at next start


class CrossSigningError(Exception):
    pass


# --- Canonical JSON and signatures (Matrix spec, appendices: signing JSON) ---------------------
def canonical_json(value: Any) -> bytes:
    """Matrix canonical JSON: sorted keys, no whitespace, UTF-8, no floats."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def decode_base64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def signable(obj: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the object without `signatures` and `unsigned`."""
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def add_signature(obj: Mapping[str, Any], user_id: str, key_id: str, signature: str) -> JsonDict:
    """A copy of `obj` with one more signature (existing signatures are kept)."""
    signed = dict(obj)
    signed.pop("unsigned", None)
    signatures = {user: dict(sigs) for user, sigs in dict(obj.get("signatures") or {}).items()}
    signatures.setdefault(user_id, {})[key_id] = signature
    signed["signatures"] = signatures
    return signed


def verify_signature(
    obj: Mapping[str, Any], user_id: str, public_key: str, key_id: str | None = None
) -> bool:
    """True if `obj` carries a valid signature by the ed25519 `public_key` (unpadded base64).

    `key_id` defaults to `ed25519:<public_key>` (cross-signing keys); devices sign as
    `ed25519:<device_id>`.
    """
    key_id = key_id or f"ed25519:{public_key}"
    signature = (obj.get("signatures") or {}).get(user_id, {}).get(key_id)
    if not isinstance(signature, str):
        return False
    try:
        key = eddsa.import_public_key(decode_base64(public_key))
        eddsa.new(key, "rfc8032").verify(signable(obj), decode_base64(signature))
    except ValueError:  # not a key, or not its signature
        return False
    return True


# --- The three keys -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningKey:
    seed: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))  # an ed25519 private key is its 32-byte seed (RFC 8032)

    @property
    def _private(self) -> EccKey:
        return eddsa.import_private_key(self.seed)

    @property
    def public_key(self) -> str:
        return encode_base64(self._private.public_key().export_key(format="raw"))

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.public_key}"

    def sign(self, obj: Mapping[str, Any], user_id: str) -> JsonDict:
        return add_signature(
            obj,
            user_id,
            self.key_id,
            encode_base64(eddsa.new(self._private, "rfc8032").sign(signable(obj))),
        )

    def __repr__(self) -> str:  # never print the seed
        return f"SigningKey({self.public_key})"


@dataclass(frozen=True)
class CrossSigningKeys:
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())

    def key(self, usage: str) -> SigningKey:
        return {
            "master": self.master,
            "self_signing": self.self_signing,
            "user_signing": self.user_signing,
        }[usage]

    def public_key_object(self, usage: str, user_id: str) -> JsonDict:
        """The key as uploaded: sub-keys are signed by the master key (spec)."""
        key = self.key(usage)
        obj: JsonDict = {
            "user_id": user_id,
            "usage": [usage],
            "keys": {key.key_id: key.public_key},
        }
        return obj if usage == "master" else self.master.sign(obj, user_id)

    def upload_body(self, user_id: str) -> JsonDict:
        return {
            "master_key": self.public_key_object("master", user_id),
            "self_signing_key": self.public_key_object("self_signing", user_id),
            "user_signing_key": self.public_key_object("user_signing", user_id),
        }


def _file_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    key = scrypt(passphrase.encode("utf-8"), salt, key_len=32, N=n, r=r, p=p)
    return key if isinstance(key, bytes) else key[0]  # one key asked for


def load_keys(path: Path, user_id: str, passphrase: str | None = None) -> CrossSigningKeys | None:
    """The stored identity, None when there is none. Raises CrossSigningError if unreadable.

    A file written with a passphrase needs it; a clear file is read with or without one.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if data.get("version") != KEYS_FILE_VERSION or data.get("user_id") != user_id:
            raise CrossSigningError(f"{path}: version ou compte inattendu")
        sealed = data.get("encryption")
        if sealed is not None:
            if passphrase is None:
                raise CrossSigningError(f"{path}: chiffré, TCHAP_BOT_STORE_PASSPHRASE manquant")
            key = _file_key(passphrase, decode_base64(sealed["salt"]), *sealed["scrypt"])
            sealed_bytes = decode_base64(sealed["ciphertext"])
            cipher = AES.new(key, AES.MODE_GCM, nonce=decode_base64(sealed["nonce"]))
            cipher.update(user_id.encode("utf-8"))
            try:
                plain = cipher.decrypt_and_verify(
                    sealed_bytes[:-GCM_TAG_BYTES], sealed_bytes[-GCM_TAG_BYTES:]
                )
            except ValueError:  # the tag does not match: another passphrase, or tampering
                raise CrossSigningError(
                    f"{path}: TCHAP_BOT_STORE_PASSPHRASE ne déchiffre pas ce fichier"
                ) from None
            data = json.loads(plain)
        keys = CrossSigningKeys(*(SigningKey(decode_base64(data[usage])) for usage in USAGES))
        for usage in USAGES:  # a truncated or edited file must not go unnoticed
            if len(keys.key(usage).seed) != 32:
                raise CrossSigningError(f"{path}: clé {usage} invalide")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CrossSigningError(f"{path}: fichier illisible ({type(error).__name__})") from None
    return keys


def is_sealed(path: Path) -> bool:
    """Whether the key file is encrypted with a passphrase."""
    try:
        return "encryption" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def save_keys(
    path: Path, user_id: str, keys: CrossSigningKeys, passphrase: str | None = None
) -> None:
    """Write the private keys readable by the bot's user only (0600), atomically.

    With a passphrase the seeds are sealed with AES-256-GCM under a scrypt-derived key.
    """
    seeds = {usage: encode_base64(keys.key(usage).seed) for usage in USAGES}
    data: dict[str, Any] = {"version": KEYS_FILE_VERSION, "user_id": user_id}
    if passphrase is None:
        data.update(seeds)
    else:
        salt, nonce = os.urandom(16), os.urandom(12)
        key = _file_key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
        cipher.update(user_id.encode("utf-8"))
        encrypted, tag = cipher.encrypt_and_digest(json.dumps(seeds).encode("utf-8"))
        ciphertext = encrypted + tag
        data["encryption"] = {
            "cipher": "AES-256-GCM",
            "scrypt": [SCRYPT_N, SCRYPT_R, SCRYPT_P],
            "salt": encode_base64(salt),
            "nonce": encode_base64(nonce),
            "ciphertext": encode_base64(ciphertext),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    os.chmod(path, 0o600)


# --- Talking to the homeserver ---------------------------------------------------------------
@dataclass
class ServerIdentity:
    master: JsonDict | None
    self_signing: JsonDict | None
    user_signing: JsonDict | None
    device: JsonDict | None


def _only_key(obj: Mapping[str, Any] | None) -> str | None:
    keys = list((obj or {}).get("keys", {}).values())
    return keys[0] if len(keys) == 1 and isinstance(keys[0], str) else None


async def query_identity(http: HttpCall, user_id: str, device_id: str) -> ServerIdentity:
    status, body = await http(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}}
    )
    if status != 200:
        raise CrossSigningError(f"keys/query: HTTP {status} {body.get('errcode', '')}")
    return ServerIdentity(
        master=body.get("master_keys", {}).get(user_id),
        self_signing=body.get("self_signing_keys", {}).get(user_id),
        user_signing=body.get("user_signing_keys", {}).get(user_id),
        device=body.get("device_keys", {}).get(user_id, {}).get(device_id),
    )


async def upload_keys(
    http: HttpCall, user_id: str, keys: CrossSigningKeys, password: str | None
) -> bool:
    """POST device_signing/upload, answering user-interactive auth with the password.

    Returns False when the server insists on a password we do not have.
    """
    path = "/_matrix/client/v3/keys/device_signing/upload"
    body = keys.upload_body(user_id)
    status, answer = await http("POST", path, body)
    if status == 200:
        return True
    if status != 401 or "flows" not in answer:
        raise CrossSigningError(f"device_signing/upload: HTTP {status} {answer.get('errcode', '')}")
    stages = {stage for flow in answer.get("flows", []) for stage in flow.get("stages", [])}
    if password is None or "m.login.password" not in stages:
        return False
    body["auth"] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
        "session": answer.get("session"),
    }
    status, answer = await http("POST", path, body)
    if status != 200:
        raise CrossSigningError(
            f"device_signing/upload (mot de passe): HTTP {status} {answer.get('errcode', '')}"
        )
    return True


async def upload_signatures(http: HttpCall, signed: dict[str, JsonDict], user_id: str) -> None:
    status, answer = await http(
        "POST", "/_matrix/client/v3/keys/signatures/upload", {user_id: signed}
    )
    failures = answer.get("failures") or {}
    if status != 200 or failures:
        reasons = {
            key: (failure or {}).get("errcode")
            for key, failure in dict(failures.get(user_id) or {}).items()
        }
        raise CrossSigningError(f"signatures/upload: HTTP {status} {reasons}")


# --- The whole procedure ---------------------------------------------------------------------
async def ensure_cross_signing(
    http: HttpCall,
    *,
    user_id: str,
    device_id: str,
    device_ed25519: str,
    sign_with_device: DeviceSigner,
    keys_path: Path,
    password: str | None,
    passphrase: str | None = None,
    replace_foreign: bool = False,
) -> CrossSigningStatus:
    """Make the server show our identity and our device signed by it.

    Safe to call at every start: it only uploads what is missing. The device keys must already
    be on the server (nio's keys_upload) since the signature covers the server's copy. An
    identity on the server that is not ours is replaced only with `replace_foreign`, the
    administrator's explicit decision (TCHAP_BOT_CROSS_SIGNING_RESET).
    """
    bound = log.bind(user_id=user_id, device_id=device_id)
    try:
        keys = load_keys(keys_path, user_id, passphrase)
        if keys is not None and passphrase is not None and not is_sealed(keys_path):
            save_keys(keys_path, user_id, keys, passphrase)  # a passphrase was just configured
            bound.info("cross_signing.keys_file_sealed")
    except CrossSigningError as error:
        bound.error("cross_signing.keys_file_unreadable", reason=str(error), path=str(keys_path))
        return CrossSigningStatus.FAILED
    try:
        server = await query_identity(http, user_id, device_id)
        server_master = _only_key(server.master)
        created = False
        foreign = server_master is not None and (
            keys is None or server_master != keys.master.public_key
        )
        if foreign and not replace_foreign:
            bound.error(
                "cross_signing.foreign_identity",
                server_master_key=server_master,
                local_master_key=keys.master.public_key if keys is not None else None,
                action=(
                    "le compte a sur le serveur une identité de signature croisée que le bot ne "
                    f"possède pas (autre session, ou fichier {keys_path.name} perdu) : "
                    "restaurez ce fichier, ou démarrez une fois avec "
                    "TCHAP_BOT_CROSS_SIGNING_RESET=true et TCHAP_BOT_PASSWORD pour la "
                    "remplacer (ceux qui avaient vérifié le bot devront le revérifier)"
                ),
            )
            return CrossSigningStatus.CONFLICT
        if foreign:
            bound.warning(
                "cross_signing.replacing_foreign_identity", server_master_key=server_master
            )
        elif replace_foreign:
            bound.warning(
                "cross_signing.reset_not_needed",
                action="retirez TCHAP_BOT_CROSS_SIGNING_RESET : l'identité du bot est en place",
            )
        if keys is None:
            keys = CrossSigningKeys.generate()
            save_keys(keys_path, user_id, keys, passphrase)  # before the upload: no orphan identity
            created = True

        if (
            server_master != keys.master.public_key
            or _only_key(server.self_signing) != keys.self_signing.public_key
            or _only_key(server.user_signing) != keys.user_signing.public_key
        ):
            if not await upload_keys(http, user_id, keys, password):
                bound.warning(
                    "cross_signing.needs_password",
                    action=(
                        "le serveur exige le mot de passe pour publier l'identité de signature "
                        "croisée : définissez TCHAP_BOT_PASSWORD pour un démarrage, puis "
                        "retirez-le ; en attendant, Element/Tchap affichent l'appareil du bot "
                        "comme non vérifié"
                    ),
                )
                return CrossSigningStatus.NEEDS_PASSWORD
            bound.info("cross_signing.identity_uploaded", master_key=keys.master.public_key)

        device = server.device
        if device is None:
            raise CrossSigningError("les clés de l'appareil ne sont pas sur le serveur")
        if device.get("keys", {}).get(f"ed25519:{device_id}") != device_ed25519:
            raise CrossSigningError(
                "la clé ed25519 de l'appareil sur le serveur n'est pas la nôtre"
            )
        signed: dict[str, JsonDict] = {}
        if not verify_signature(device, user_id, keys.self_signing.public_key):
            signed[device_id] = keys.self_signing.sign(device, user_id)
        master_object = keys.public_key_object("master", user_id)
        if not verify_signature(
            server.master or {}, user_id, device_ed25519, f"ed25519:{device_id}"
        ):
            # The device vouches for the master key too, as Element's devices do.
            signature = sign_with_device(signable(master_object).decode("utf-8"))
            signed[keys.master.public_key] = add_signature(
                master_object, user_id, f"ed25519:{device_id}", signature
            )
        if signed:
            await upload_signatures(http, signed, user_id)
            bound.info("cross_signing.device_signed", signed=sorted(signed))
    except CrossSigningError as error:
        bound.warning("cross_signing.failed", reason=str(error))
        return CrossSigningStatus.FAILED
    if created:
        bound.info("cross_signing.identity_created", master_key=keys.master.public_key)
        return CrossSigningStatus.CREATED
    return CrossSigningStatus.READY
