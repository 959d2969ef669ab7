"""Cross-signing without a server: the spec's signing vectors, the key file, the procedure.

The procedure runs against a small in-memory key server that answers like Synapse does for the
three endpoints (query, device_signing upload with user-interactive auth, signatures upload);
the real Synapse and Element checks are in tests/integration.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey as NaclSigningKey
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import sign_json, verify_signed_json

from bot.matrix.cross_signing import (
    KEYS_FILE_NAME,
    CrossSigningError,
    CrossSigningKeys,
    CrossSigningStatus,
    SigningKey,
    canonical_json,
    decode_base64,
    encode_base64,
    ensure_cross_signing,
    is_sealed,
    load_keys,
    save_keys,
    verify_signature,
)

USER = "@assistant:agent.dinum.tchap.gouv.fr"
DEVICE = "BOTDEVICE"
PASSWORD = "mot-de-passe"

# Matrix spec, appendix "Signing JSON": this seed signs {} and {"one": 1, "two": "Two"} so.
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SPEC_SIG_EMPTY = (
    "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
)
SPEC_SIG_ONE_TWO = (
    "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
)


# --- canonical JSON and signatures ---------------------------------------------------------------
def test_canonical_json_matches_the_spec_examples() -> None:
    assert canonical_json({}) == b"{}"
    assert canonical_json({"one": 1, "two": "Two"}) == b'{"one":1,"two":"Two"}'
    assert canonical_json({"b": "2", "a": "1"}) == b'{"a":"1","b":"2"}'
    assert canonical_json({"a": "日本語"}) == '{"a":"日本語"}'.encode()
    assert canonical_json({"本": 2, "日": 1}) == '{"日":1,"本":2}'.encode()
    assert canonical_json({"a": "\u65e5"}) == '{"a":"日"}'.encode()
    assert canonical_json({"a": None}) == b'{"a":null}'
    assert (
        canonical_json({"auth": {"success": True, "mxid": "@john.doe:example.com"}})
        == b'{"auth":{"mxid":"@john.doe:example.com","success":true}}'
    )


def test_signatures_match_the_spec_vectors() -> None:
    key = SigningKey(decode_base64(SPEC_SEED))
    assert key.sign({}, "domain")["signatures"]["domain"][key.key_id] == SPEC_SIG_EMPTY
    signed = key.sign({"one": 1, "two": "Two"}, "domain")
    assert signed["signatures"]["domain"][key.key_id] == SPEC_SIG_ONE_TWO
    assert signed["one"] == 1 and signed["two"] == "Two"


def test_our_signatures_verify_with_signedjson_and_back() -> None:
    ours = SigningKey.generate()
    obj = {"user_id": USER, "keys": {"ed25519:X": "abc"}, "unsigned": {"x": 1}}
    signed = ours.sign(obj, USER)
    verify_key = decode_verify_key_bytes(ours.key_id, decode_base64(ours.public_key))
    verify_signed_json(signed, USER, verify_key)  # raises if wrong

    theirs = NaclSigningKey.generate()
    theirs.alg, theirs.version = "ed25519", "DEVICE"  # type: ignore[attr-defined]
    signed_by_them = sign_json({"a": 1, "signatures": {"x": {"y": "z"}}}, USER, theirs)
    public = encode_base64(bytes(theirs.verify_key))
    assert verify_signature(signed_by_them, USER, public, "ed25519:DEVICE")


def test_verification_rejects_tampering_wrong_keys_and_missing_signatures() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    signed = key.sign({"usage": ["master"]}, USER)
    assert verify_signature(signed, USER, key.public_key)
    assert verify_signature({**signed, "unsigned": {"age": 3}}, USER, key.public_key)
    assert not verify_signature({**signed, "usage": ["self_signing"]}, USER, key.public_key)
    assert not verify_signature(signed, USER, other.public_key)
    assert not verify_signature(signed, "@other:server", key.public_key)
    assert not verify_signature({"usage": ["master"]}, USER, key.public_key)
    forged = {**signed, "signatures": {USER: {other.key_id: "AAAA"}}}
    assert not verify_signature(forged, USER, other.public_key)


def test_adding_a_signature_keeps_the_others() -> None:
    first, second = SigningKey.generate(), SigningKey.generate()
    both = second.sign(first.sign({"k": "v"}, USER), USER)
    assert verify_signature(both, USER, first.public_key)
    assert verify_signature(both, USER, second.public_key)


def test_sub_keys_are_signed_by_the_master_key() -> None:
    keys = CrossSigningKeys.generate()
    body = keys.upload_body(USER)
    assert body["master_key"]["usage"] == ["master"]
    assert "signatures" not in body["master_key"]
    for name, usage in (("self_signing_key", "self_signing"), ("user_signing_key", "user_signing")):
        assert body[name]["usage"] == [usage]
        assert body[name]["keys"] == {keys.key(usage).key_id: keys.key(usage).public_key}
        assert verify_signature(body[name], USER, keys.master.public_key)
    assert (
        len({keys.master.public_key, keys.self_signing.public_key, keys.user_signing.public_key})
        == 3
    )


# --- the key file ---------------------------------------------------------------------------------
def test_key_file_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "crypto" / KEYS_FILE_NAME
    keys = CrossSigningKeys.generate()
    save_keys(path, USER, keys)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_keys(path, USER)
    assert loaded == keys
    assert encode_base64(keys.master.seed) not in repr(keys)
    assert not list(path.parent.glob("*.tmp"))


def test_missing_key_file_means_no_identity(tmp_path: Path) -> None:
    assert load_keys(tmp_path / KEYS_FILE_NAME, USER) is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"version": 1, "user_id": USER}),
        json.dumps(
            {"version": 99, "user_id": USER, "master": "", "self_signing": "", "user_signing": ""}
        ),
        json.dumps(
            {
                "version": 1,
                "user_id": USER,
                "master": "AAAA",
                "self_signing": "AAAA",
                "user_signing": "AAAA",
            }
        ),
    ],
)
def test_unreadable_key_file_is_an_error_not_a_missing_identity(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / KEYS_FILE_NAME
    path.write_text(content)
    with pytest.raises(CrossSigningError):
        load_keys(path, USER)


def test_key_file_of_another_account_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE_NAME
    save_keys(path, "@someone-else:server", CrossSigningKeys.generate())
    with pytest.raises(CrossSigningError):
        load_keys(path, USER)


def test_key_file_sealed_with_a_passphrase(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE_NAME
    keys = CrossSigningKeys.generate()
    save_keys(path, USER, keys, passphrase="phrase")

    text = path.read_text()
    assert is_sealed(path)
    for usage in ("master", "self_signing", "user_signing"):
        assert encode_base64(keys.key(usage).seed) not in text
    assert load_keys(path, USER, "phrase") == keys
    with pytest.raises(CrossSigningError, match="ne déchiffre pas"):
        load_keys(path, USER, "autre phrase")
    with pytest.raises(CrossSigningError, match="manquant"):
        load_keys(path, USER)


def test_sealed_key_file_is_bound_to_its_account(tmp_path: Path) -> None:
    path = tmp_path / KEYS_FILE_NAME
    save_keys(path, USER, CrossSigningKeys.generate(), passphrase="phrase")
    data = json.loads(path.read_text())
    data["user_id"] = "@autre:serveur"
    path.write_text(json.dumps(data))
    with pytest.raises(CrossSigningError):
        load_keys(path, "@autre:serveur", "phrase")  # the account is authenticated data


# --- the procedure against an in-memory key server -----------------------------------------------
class FakeKeyServer:
    """The three endpoints with Synapse's answers, including user-interactive auth."""

    def __init__(self, require_password: bool = False) -> None:
        self.require_password = require_password
        self.device_key = NaclSigningKey.generate()
        self.device_ed25519 = encode_base64(bytes(self.device_key.verify_key))
        self.device: dict[str, Any] = self._signed_device()
        self.master: dict[str, Any] | None = None
        self.self_signing: dict[str, Any] | None = None
        self.user_signing: dict[str, Any] | None = None
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    def _signed_device(self) -> dict[str, Any]:
        self.device_key.alg, self.device_key.version = "ed25519", DEVICE  # type: ignore[attr-defined]
        device = {
            "user_id": USER,
            "device_id": DEVICE,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{DEVICE}": "curve", f"ed25519:{DEVICE}": self.device_ed25519},
        }
        return sign_json(device, USER, self.device_key)

    def sign_with_device(self, canonical: str) -> str:
        return encode_base64(self.device_key.sign(canonical.encode()).signature)

    @property
    def writes(self) -> list[str]:
        return [path for path, _ in self.calls if not path.endswith("/keys/query")]

    async def __call__(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        assert method == "POST" and body is not None
        body = json.loads(json.dumps(body))  # a snapshot: the caller may reuse its dict
        self.calls.append((path, body))
        if path.endswith("/keys/query"):
            answer: dict[str, Any] = {"device_keys": {USER: {DEVICE: self.device}}}
            for name, value in (
                ("master_keys", self.master),
                ("self_signing_keys", self.self_signing),
                ("user_signing_keys", self.user_signing),
            ):
                if value is not None:
                    answer[name] = {USER: value}
            return 200, answer
        if path.endswith("/keys/device_signing/upload"):
            if self.master is not None or self.require_password:
                auth = body.get("auth")
                if not auth:
                    return 401, {
                        "session": "uia-session",
                        "flows": [{"stages": ["m.login.password"]}],
                        "params": {},
                    }
                if auth != {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": USER},
                    "password": PASSWORD,
                    "session": "uia-session",
                }:
                    return 401, {"errcode": "M_FORBIDDEN", "flows": []}
            self.master = body["master_key"]
            self.self_signing = body["self_signing_key"]
            self.user_signing = body["user_signing_key"]
            return 200, {}
        if path.endswith("/keys/signatures/upload"):
            for key_id, signed in body[USER].items():
                target = self.device if key_id == DEVICE else self.master
                assert target is not None
                stripped = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
                assert stripped == {
                    k: v for k, v in target.items() if k not in ("signatures", "unsigned")
                }, "uploaded object differs from the stored one"
                for user, sigs in signed["signatures"].items():
                    target.setdefault("signatures", {}).setdefault(user, {}).update(sigs)
            return 200, {"failures": {}}
        raise AssertionError(path)


async def ensure(
    server: FakeKeyServer, tmp_path: Path, password: str | None = PASSWORD
) -> CrossSigningStatus:
    return await ensure_cross_signing(
        server,
        user_id=USER,
        device_id=DEVICE,
        device_ed25519=server.device_ed25519,
        sign_with_device=server.sign_with_device,
        keys_path=tmp_path / KEYS_FILE_NAME,
        password=password,
    )


def verify_key_of(obj: dict[str, Any]) -> Any:
    ((key_id, public),) = obj["keys"].items()
    return decode_verify_key_bytes(key_id, decode_base64(public))


async def test_first_start_creates_uploads_and_signs_the_device(tmp_path: Path) -> None:
    server = FakeKeyServer()

    assert await ensure(server, tmp_path) is CrossSigningStatus.CREATED

    keys = load_keys(tmp_path / KEYS_FILE_NAME, USER)
    assert keys is not None and server.master is not None and server.self_signing is not None
    assert server.master["keys"] == {keys.master.key_id: keys.master.public_key}
    verify_signed_json(server.self_signing, USER, verify_key_of(server.master))
    verify_signed_json(server.device, USER, verify_key_of(server.self_signing))
    device_verify = decode_verify_key_bytes(
        f"ed25519:{DEVICE}", bytes(server.device_key.verify_key)
    )
    verify_signed_json(server.master, USER, device_verify)


async def test_next_starts_reuse_the_identity_and_write_nothing(tmp_path: Path) -> None:
    server = FakeKeyServer()
    await ensure(server, tmp_path)
    master = dict(server.master or {})
    server.calls.clear()

    assert await ensure(server, tmp_path) is CrossSigningStatus.READY
    assert await ensure(server, tmp_path, password=None) is CrossSigningStatus.READY

    assert server.writes == []
    assert server.master == master


async def test_new_device_of_the_same_bot_gets_signed_by_the_same_identity(tmp_path: Path) -> None:
    server = FakeKeyServer()
    await ensure(server, tmp_path)
    master_before = server.master
    server.device_key = NaclSigningKey.generate()  # the admin deleted the session: new device
    server.device_ed25519 = encode_base64(bytes(server.device_key.verify_key))
    server.device = server._signed_device()

    assert await ensure(server, tmp_path) is CrossSigningStatus.READY

    assert server.master is not None
    assert server.master["keys"] == (master_before or {})["keys"]
    assert server.self_signing is not None
    verify_signed_json(server.device, USER, verify_key_of(server.self_signing))


async def test_password_answers_user_interactive_auth(tmp_path: Path) -> None:
    server = FakeKeyServer(require_password=True)

    assert await ensure(server, tmp_path) is CrossSigningStatus.CREATED

    uploads = [body for path, body in server.calls if path.endswith("device_signing/upload")]
    assert len(uploads) == 2
    assert uploads[0] is not None and "auth" not in uploads[0]
    assert uploads[1] is not None and uploads[1]["auth"]["session"] == "uia-session"


async def test_without_password_it_waits_and_never_makes_a_second_identity(
    tmp_path: Path,
) -> None:
    server = FakeKeyServer(require_password=True)

    assert await ensure(server, tmp_path, password=None) is CrossSigningStatus.NEEDS_PASSWORD
    assert server.master is None
    kept = load_keys(tmp_path / KEYS_FILE_NAME, USER)
    assert kept is not None, "the identity is kept locally for the next start"

    assert await ensure(server, tmp_path, password=PASSWORD) is CrossSigningStatus.READY
    assert server.master is not None
    assert server.master["keys"] == {kept.master.key_id: kept.master.public_key}


async def test_identity_on_the_server_that_we_do_not_hold_is_left_alone(tmp_path: Path) -> None:
    server = FakeKeyServer()
    foreign = CrossSigningKeys.generate().upload_body(USER)
    server.master, server.self_signing = foreign["master_key"], foreign["self_signing_key"]

    assert await ensure(server, tmp_path) is CrossSigningStatus.CONFLICT

    assert server.writes == []
    assert server.master == foreign["master_key"]
    assert not (tmp_path / KEYS_FILE_NAME).exists()


async def test_local_identity_different_from_the_server_is_not_pushed(tmp_path: Path) -> None:
    server = FakeKeyServer()
    save_keys(tmp_path / KEYS_FILE_NAME, USER, CrossSigningKeys.generate())
    foreign = CrossSigningKeys.generate().upload_body(USER)
    server.master = foreign["master_key"]

    assert await ensure(server, tmp_path) is CrossSigningStatus.CONFLICT
    assert server.writes == []
    assert server.master == foreign["master_key"]


async def test_device_keys_that_are_not_ours_are_never_signed(tmp_path: Path) -> None:
    server = FakeKeyServer()
    ours = server.device_ed25519
    server.device_key = NaclSigningKey.generate()  # the server shows another key for our id
    server.device_ed25519 = encode_base64(bytes(server.device_key.verify_key))
    server.device = server._signed_device()

    status = await ensure_cross_signing(
        server,
        user_id=USER,
        device_id=DEVICE,
        device_ed25519=ours,
        sign_with_device=server.sign_with_device,
        keys_path=tmp_path / KEYS_FILE_NAME,
        password=PASSWORD,
    )

    assert status is CrossSigningStatus.FAILED
    assert not any(path.endswith("signatures/upload") for path in server.writes)


async def test_unreadable_key_file_stops_before_touching_the_server(tmp_path: Path) -> None:
    server = FakeKeyServer()
    path = tmp_path / KEYS_FILE_NAME
    path.write_text("{broken")

    assert await ensure(server, tmp_path) is CrossSigningStatus.FAILED

    assert server.calls == []
    assert path.read_text() == "{broken", "the damaged file is kept for the administrator"


async def test_configuring_a_passphrase_seals_the_existing_identity(tmp_path: Path) -> None:
    server = FakeKeyServer()
    await ensure(server, tmp_path)
    path = tmp_path / KEYS_FILE_NAME
    before = load_keys(path, USER)
    assert not is_sealed(path)
    server.calls.clear()

    status = await ensure_cross_signing(
        server,
        user_id=USER,
        device_id=DEVICE,
        device_ed25519=server.device_ed25519,
        sign_with_device=server.sign_with_device,
        keys_path=path,
        password=None,
        passphrase="phrase",
    )

    assert status is CrossSigningStatus.READY
    assert is_sealed(path)
    assert load_keys(path, USER, "phrase") == before
    assert await ensure(server, tmp_path) is CrossSigningStatus.FAILED, "now needs the phrase"
    assert server.writes == []


async def test_admin_reset_replaces_a_foreign_identity_with_the_password(tmp_path: Path) -> None:
    server = FakeKeyServer()
    foreign = CrossSigningKeys.generate().upload_body(USER)
    server.master, server.self_signing = foreign["master_key"], foreign["self_signing_key"]

    status = await ensure_cross_signing(
        server,
        user_id=USER,
        device_id=DEVICE,
        device_ed25519=server.device_ed25519,
        sign_with_device=server.sign_with_device,
        keys_path=tmp_path / KEYS_FILE_NAME,
        password=PASSWORD,
        replace_foreign=True,
    )

    assert status is CrossSigningStatus.CREATED
    keys = load_keys(tmp_path / KEYS_FILE_NAME, USER)
    assert keys is not None and server.master is not None
    assert server.master["keys"] == {keys.master.key_id: keys.master.public_key}
    uploads = [body for path, body in server.calls if path.endswith("device_signing/upload")]
    assert uploads[-1] is not None and uploads[-1]["auth"]["type"] == "m.login.password"


async def test_admin_reset_without_conflict_changes_nothing(tmp_path: Path) -> None:
    server = FakeKeyServer()
    await ensure(server, tmp_path)
    server.calls.clear()

    status = await ensure_cross_signing(
        server,
        user_id=USER,
        device_id=DEVICE,
        device_ed25519=server.device_ed25519,
        sign_with_device=server.sign_with_device,
        keys_path=tmp_path / KEYS_FILE_NAME,
        password=PASSWORD,
        replace_foreign=True,
    )

    assert status is CrossSigningStatus.READY
    assert server.writes == []
