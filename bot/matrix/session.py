"""The bot's Matrix session: reuse the saved one (each password login makes a new device), open
the crypto store with its passphrase, and keep the bot's cross-signing identity."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import structlog
from nio import AsyncClient, LoginResponse, WhoamiResponse
from nio.store import DefaultStore

from bot.matrix.cross_signing import KEYS_FILE_NAME, CrossSigningStatus, ensure_cross_signing
from bot.store import Store
from bot.store.database import Session
from config.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_PICKLE_KEY = "DEFAULT_KEY"  # nio's own default: the store is then effectively clear


class AuthenticationFailed(Exception):
    """The homeserver refuses the bot's credentials: retrying cannot help, the admin must act."""


AUTH_ERROR_CODES = {
    "M_UNKNOWN_TOKEN",
    "M_MISSING_TOKEN",
    "M_FORBIDDEN",
    "ORG_MATRIX_EXPIRED_ACCOUNT",
    "M_USER_DEACTIVATED",
}


def raise_if_auth_error(response: Any) -> None:
    """A refused access token or account stops the bot with a message saying what to do,
    instead of retrying forever."""
    transport = getattr(response, "transport_response", None)
    http_status = getattr(transport, "status", None)
    code = str(getattr(response, "status_code", "") or "")
    if http_status in (401, 403) or code in AUTH_ERROR_CODES:
        if code == "ORG_MATRIX_EXPIRED_ACCOUNT":
            detail = "le compte du bot a expiré (ORG_MATRIX_EXPIRED_ACCOUNT) : faites-le renouveler"
        else:
            detail = (
                f"le serveur refuse le jeton d'accès du bot ({code or http_status}) : renouvelez-le"
            )
        raise AuthenticationFailed(detail)


async def restore_or_login(client: AsyncClient, settings: Settings, store: Store) -> None:
    """Reuse the saved session; else the configured token; else log in once (a new device)."""
    saved = await store.state.load_session()
    if (
        saved is not None
        and saved.user_id == settings.user_id
        and (
            settings.access_token is None
            or saved.access_token == settings.access_token.get_secret_value()
        )
    ):
        client.restore_login(saved.user_id, saved.device_id, saved.access_token)
        log.info("matrix.session_restored", device_id=saved.device_id)
        return
    if settings.access_token is not None:
        token = settings.access_token.get_secret_value()
        device_id = settings.device_id
        if device_id is None:
            client.access_token = token
            whoami = await client.whoami()
            if not isinstance(whoami, WhoamiResponse) or not whoami.device_id:
                raise AuthenticationFailed(
                    "TCHAP_BOT_ACCESS_TOKEN refusé par le serveur (ou sans appareil) : "
                    "définissez TCHAP_BOT_DEVICE_ID ou renouvelez le jeton"
                )
            device_id = whoami.device_id
        client.restore_login(settings.user_id, device_id, token)
        await store.state.save_session(
            Session(user_id=settings.user_id, device_id=device_id, access_token=token)
        )
        log.info("matrix.session_from_token", device_id=device_id)
        return
    assert settings.password is not None  # guaranteed by Settings validation
    response = await client.login(
        settings.password.get_secret_value(), device_name=settings.device_name
    )
    if not isinstance(response, LoginResponse):
        raise AuthenticationFailed(
            f"Connexion refusée pour {settings.user_id} : vérifiez TCHAP_BOT_PASSWORD "
            f"({getattr(response, 'status_code', 'erreur inconnue')})"
        )
    await store.state.save_session(
        Session(
            user_id=response.user_id,
            device_id=response.device_id,
            access_token=response.access_token,
        )
    )
    log.info("matrix.logged_in", device_id=response.device_id)


async def setup_cross_signing(client: AsyncClient, settings: Settings) -> CrossSigningStatus | None:
    """Publish the device keys, then make sure the bot's own identity signs this device."""
    olm = client.olm
    if olm is None or not client.device_id:
        return None
    password = settings.password
    passphrase = settings.store_passphrase
    try:
        if client.should_upload_keys:  # the signature covers the server's copy
            await client.keys_upload()
        return await ensure_cross_signing(
            partial(http_json, client),
            user_id=settings.user_id,
            device_id=str(client.device_id),
            device_ed25519=olm.account.identity_keys["ed25519"],
            sign_with_device=olm.account.sign,
            keys_path=settings.crypto_store_dir / KEYS_FILE_NAME,
            password=password.get_secret_value() if password is not None else None,
            passphrase=passphrase.get_secret_value() if passphrase is not None else None,
            replace_foreign=settings.cross_signing_reset,
        )
    except Exception as error:  # transport trouble: the bot runs anyway, retried next start
        log.warning("cross_signing.failed", error_type=type(error).__name__)
        return CrossSigningStatus.FAILED


async def http_json(
    client: AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    """One authenticated request through nio's HTTP session (same TLS and proxy settings)."""
    headers = {
        "Authorization": f"Bearer {client.access_token}",
        "Content-Type": "application/json",
    }
    data = json.dumps(body) if body is not None else None
    async with await client.send(method, path, data=data, headers=headers) as response:
        try:
            payload = await response.json(content_type=None)
        except ValueError:
            payload = None
        return response.status, payload if isinstance(payload, dict) else {}


def pickle_key(settings: Settings) -> str:
    passphrase = settings.store_passphrase
    return passphrase.get_secret_value() if passphrase is not None else DEFAULT_PICKLE_KEY


def _opens(store: DefaultStore) -> bool:
    """Whether every private key of a nio store unpickles with the store's current key."""
    try:
        store.load_account()
        store.load_sessions()
        store.load_inbound_group_sessions()
    except Exception:  # vodozemac raises its own pickle errors on a wrong key
        return False
    return True


def unlock_crypto_store(settings: Settings) -> None:
    """Check that TCHAP_BOT_STORE_PASSPHRASE opens the crypto store; seal a store made without.

    nio pickles the device's Olm account, Olm sessions and Megolm room keys with this key.
    Adding a passphrase to an existing store re-encrypts them in one transaction; a wrong or
    missing passphrase stops the bot with a clear message instead of a new device.
    """
    key = pickle_key(settings)
    prefix = f"{settings.user_id}_"
    for path in sorted(settings.crypto_store_dir.glob(f"{prefix}*.db")):
        device_id = path.name[len(prefix) : -len(".db")]
        store = DefaultStore(settings.user_id, device_id, str(settings.crypto_store_dir), key)
        try:
            if _opens(store):
                continue
            store.pickle_key = DEFAULT_PICKLE_KEY
            if key == DEFAULT_PICKLE_KEY or not _opens(store):
                raise AuthenticationFailed(
                    "TCHAP_BOT_STORE_PASSPHRASE absent ou incorrect : il ne déchiffre pas le "
                    f"magasin de clés {path.name} (remettez la phrase de passe d'origine)"
                )
            account = store.load_account()
            sessions = store.load_sessions()
            inbound = store.load_inbound_group_sessions()
            store.pickle_key = key
            with store.database.atomic():
                if account is not None:
                    store.save_account(account)
                for sender_key, session_list in sessions.items():
                    for session in session_list:
                        store.save_session(sender_key, session)
                for group_session in inbound:
                    store.save_inbound_group_session(group_session)
            log.info("matrix.crypto_store_sealed", device_id=device_id)
        finally:
            store.database.close()


def crypto_store_opens(settings: Settings, device_id: str) -> bool | None:
    """For `tchap-bot doctor`: None when this device has no crypto store yet, else whether its
    private keys open with the configured passphrase (TCHAP_BOT_STORE_PASSPHRASE)."""
    path = settings.crypto_store_dir / f"{settings.user_id}_{device_id}.db"
    if not path.is_file():
        return None
    store = DefaultStore(
        settings.user_id, device_id, str(settings.crypto_store_dir), pickle_key(settings)
    )
    try:
        return _opens(store)
    finally:
        store.database.close()
