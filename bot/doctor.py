"""`tchap-bot doctor`: is this installation ready? One French line per check, ✓ or ✗.

Checks, in order: the settings; the data folder (exists or can be made, only the bot's user
can read it); the single-process lock; the homeserver (reachable, which Matrix versions); the
bot's credentials (saved session or configured token: `/whoami`; a password alone: one login
then logout); the crypto store (opens with the configured passphrase) and cross-signing (our
identity on the server, this device signed); the model endpoint (`/v1/models`), the configured
models, and each optional capability (OCR, embeddings, transcription, vision) when configured.
Exit code 0 only when every check passes. Nothing is changed, except the short-lived device of
a password check, logged out at once. Secrets are never printed.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot import texts
from bot.answer.llm import LLMClient, ModelCard
from bot.answer.llm_failures import LLMError
from bot.matrix.cross_signing import (
    KEYS_FILE_NAME,
    CrossSigningError,
    JsonDict,
    load_keys,
    query_identity,
)
from bot.matrix.session import crypto_store_opens
from bot.ops import datalock
from bot.ops.proxy import proxy_for
from bot.store import Store
from bot.store.database import Session
from config.settings import ConfigError, Settings, load_settings

HTTP_TIMEOUT_SECONDS = 10.0
DOCTOR_DEVICE_NAME = "tchap-bot doctor (vérification du mot de passe)"

# (label, settings fields that may name the model, capability the model card should declare)
OPTIONAL_CAPABILITIES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("OCR", ("ocr_model",), "ocr"),
    ("Embeddings", ("embedding_model", "embeddings_model"), None),
    ("Transcription", ("transcription_model",), "audio_transcription"),
    ("Vision", ("vision_model",), "vision"),
)


@dataclass(frozen=True)
class Check:
    ok: bool
    label: str
    detail: str

    def line(self) -> str:
        template = texts.DOCTOR_OK if self.ok else texts.DOCTOR_FAILED
        return template.format(label=self.label, detail=self.detail)


class Doctor:
    def __init__(self, settings: Settings, report: Callable[[Check], None]) -> None:
        self.settings = settings
        self._report = report
        self.checks: list[Check] = []
        self._http: aiohttp.ClientSession | None = None
        self._proxy = proxy_for(settings.homeserver, settings.proxy_url)

    def _add(self, ok: bool, label: str, detail: str) -> bool:
        check = Check(ok, label, detail)
        self.checks.append(check)
        self._report(check)
        return ok

    async def run(self) -> bool:
        self.check_data_dir()
        self.check_lock()
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self._http = http
            if await self.check_homeserver():
                session = await self.check_credentials()
                self.check_crypto_store(session)
                await self.check_cross_signing(session)
            else:
                reason = texts.DOCTOR_NOT_CHECKED.format(reason="serveur Matrix injoignable")
                for label in ("Compte du bot", "Magasin de clés", "Signature croisée"):
                    self._add(False, label, reason)
        cards = await self.check_model_endpoint()
        self.check_models(cards)
        return all(check.ok for check in self.checks)

    # --- Local state ------------------------------------------------------------------------
    def check_data_dir(self) -> bool:
        label = "Dossier de données"
        data_dir = self.settings.data_dir
        if not data_dir.exists():
            parent = data_dir.resolve().parent
            if os.access(parent, os.W_OK | os.X_OK):
                return self._add(True, label, f"{data_dir} sera créé au premier démarrage")
            return self._add(
                False,
                label,
                f"{data_dir} n'existe pas et {parent} n'est pas accessible en écriture : créez-le "
                "pour l'utilisateur du bot (TCHAP_BOT_DATA_DIR)",
            )
        if not data_dir.is_dir():
            return self._add(
                False, label, f"{data_dir} n'est pas un dossier : corrigez TCHAP_BOT_DATA_DIR"
            )
        if not os.access(data_dir, os.W_OK | os.X_OK):
            return self._add(
                False,
                label,
                f"{data_dir} n'est pas accessible en écriture : `chown` au compte du bot "
                "(sur Kubernetes : fsGroup du pod)",
            )
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        if mode & 0o007:  # group access is the norm on Kubernetes (fsGroup); others never
            return self._add(
                False,
                label,
                f"{data_dir} est lisible par d'autres comptes ({mode:o}) : `chmod 700 {data_dir}` "
                "(il contient le jeton, les clés de chiffrement et des messages)",
            )
        return self._add(True, label, f"{data_dir} accessible au seul compte du bot")

    def check_lock(self) -> bool:
        label = "Verrou"
        try:
            pid = datalock.holder(self.settings.data_dir)
        except OSError as error:
            return self._add(
                False,
                label,
                f"{datalock.lock_path(self.settings.data_dir)} illisible ({error.strerror}) : "
                "rendez-le au compte du bot",
            )
        if pid is None:
            return self._add(True, label, "aucun processus n'utilise ce dossier de données")
        return self._add(True, label, f"le bot tourne sur ce dossier (PID {pid})")

    # --- Matrix -----------------------------------------------------------------------------
    async def _get(
        self, path: str, token: str | None = None, method: str = "GET", body: Any = None
    ) -> tuple[int, JsonDict]:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._http.request(
            method,
            self.settings.homeserver + path,
            headers=headers,
            json=body,
            proxy=self._proxy,
        ) as response:
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = None
            return response.status, payload if isinstance(payload, dict) else {}

    async def check_homeserver(self) -> bool:
        label = "Serveur Matrix"
        homeserver = self.settings.homeserver
        try:
            status, body = await self._get("/_matrix/client/versions")
        except (aiohttp.ClientError, TimeoutError) as error:
            return self._add(
                False,
                label,
                f"{homeserver} injoignable ({type(error).__name__}) : vérifiez "
                "TCHAP_BOT_HOMESERVER, le réseau ou le proxy (HTTPS_PROXY, TCHAP_BOT_PROXY_URL)",
            )
        versions = [v for v in body.get("versions", []) if isinstance(v, str)]
        if status != 200 or not versions:
            return self._add(
                False,
                label,
                f"{homeserver} répond HTTP {status} sans versions Matrix : est-ce bien l'URL du "
                "serveur Matrix (TCHAP_BOT_HOMESERVER) ?",
            )
        current = [v for v in versions if v.startswith("v1.")]
        if not current:
            return self._add(
                False, label, f"{homeserver} trop ancien ({versions[-1]}) : Matrix v1.1 au moins"
            )
        return self._add(
            True, label, f"{homeserver} joignable (Matrix {current[0]} à {current[-1]})"
        )

    async def check_credentials(self) -> Session | None:
        """Which credentials the bot will use at start, and whether the server takes them."""
        label = "Compte du bot"
        settings = self.settings
        saved = await _load_saved_session(settings)
        if saved is not None and saved.user_id == settings.user_id:
            configured = settings.access_token
            if configured is None or configured.get_secret_value() == saved.access_token:
                return await self._whoami(label, saved, "session enregistrée")
        if settings.access_token is not None:
            token = settings.access_token.get_secret_value()
            session = Session(
                user_id=settings.user_id, device_id=settings.device_id or "", access_token=token
            )
            return await self._whoami(label, session, "TCHAP_BOT_ACCESS_TOKEN")
        assert settings.password is not None
        status, body = await self._get(
            "/_matrix/client/v3/login",
            method="POST",
            body={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": settings.user_id},
                "password": settings.password.get_secret_value(),
                "initial_device_display_name": DOCTOR_DEVICE_NAME,
            },
        )
        new_token = body.get("access_token")
        if status != 200 or not isinstance(new_token, str):
            self._add(
                False,
                label,
                f"connexion refusée pour {settings.user_id} ({body.get('errcode', status)}) : "
                "vérifiez TCHAP_BOT_USER_ID et TCHAP_BOT_PASSWORD",
            )
            return None
        await self._get("/_matrix/client/v3/logout", new_token, method="POST", body={})
        self._add(
            True,
            label,
            f"mot de passe accepté pour {settings.user_id} (pas encore de session : le premier "
            "démarrage se connectera)",
        )
        return None

    async def _whoami(self, label: str, session: Session, source: str) -> Session | None:
        status, body = await self._get("/_matrix/client/v3/account/whoami", session.access_token)
        errcode = str(body.get("errcode", ""))
        if status != 200:
            if errcode == "ORG_MATRIX_EXPIRED_ACCOUNT":
                detail = (
                    "le compte du bot a expiré (ORG_MATRIX_EXPIRED_ACCOUNT) : faites-le renouveler"
                )
            else:
                detail = (
                    f"jeton d'accès refusé ({errcode or status}, {source}) : lancez "
                    "`tchap-bot reset-session`, puis démarrez avec TCHAP_BOT_PASSWORD ou un "
                    "nouveau TCHAP_BOT_ACCESS_TOKEN"
                )
            self._add(False, label, detail)
            return None
        user_id = body.get("user_id")
        device_id = body.get("device_id") or session.device_id
        if user_id != self.settings.user_id:
            self._add(
                False,
                label,
                f"le jeton appartient à {user_id}, pas à {self.settings.user_id} : corrigez "
                "TCHAP_BOT_USER_ID ou le jeton",
            )
            return None
        self._add(True, label, f"{user_id}, appareil {device_id} ({source}) : jeton valide")
        return Session(
            user_id=str(user_id), device_id=str(device_id), access_token=session.access_token
        )

    def check_crypto_store(self, session: Session | None) -> bool:
        label = "Magasin de clés"
        if session is None or not session.device_id:
            return self._add(True, label, "sera créé au premier démarrage (pas encore d'appareil)")
        opens = crypto_store_opens(self.settings, session.device_id)
        if opens is None:
            return self._add(
                False,
                label,
                f"absent pour l'appareil {session.device_id} dans {self.settings.crypto_store_dir} : "
                "le bot ne lira pas les salons chiffrés d'avant ; restaurez le dossier crypto/, "
                "ou `tchap-bot reset-session` pour repartir avec un nouvel appareil",
            )
        if not opens:
            return self._add(
                False,
                label,
                "TCHAP_BOT_STORE_PASSPHRASE absent ou incorrect : il ne déchiffre pas le magasin "
                "de clés (remettez la phrase de passe d'origine)",
            )
        return self._add(True, label, f"appareil {session.device_id} : clés lisibles")

    async def check_cross_signing(self, session: Session | None) -> bool:
        label = "Signature croisée"
        if session is None or not session.device_id:
            return self._add(True, label, "sera mise en place au premier démarrage")
        settings = self.settings
        passphrase = settings.store_passphrase
        keys_path = settings.crypto_store_dir / KEYS_FILE_NAME
        try:
            keys = load_keys(
                keys_path,
                settings.user_id,
                passphrase.get_secret_value() if passphrase is not None else None,
            )
        except CrossSigningError as error:
            return self._add(False, label, f"{error} : restaurez ce fichier ou la phrase de passe")

        async def http(method: str, path: str, body: JsonDict | None) -> tuple[int, JsonDict]:
            return await self._get(path, session.access_token, method=method, body=body)

        try:
            server = await query_identity(http, settings.user_id, session.device_id)
        except (CrossSigningError, aiohttp.ClientError, TimeoutError) as error:
            return self._add(False, label, f"état illisible sur le serveur ({error})")
        server_master = _only_key(server.master)
        if keys is None and server_master is None:
            return self._add(
                False,
                label,
                "pas encore d'identité : démarrez le bot une fois avec TCHAP_BOT_PASSWORD "
                "(Element et Tchap afficheront alors l'appareil comme vérifié)",
            )
        if keys is None or server_master != keys.master.public_key:
            return self._add(
                False,
                label,
                f"le serveur a une identité que le bot ne possède pas ({keys_path.name} absent ou "
                "d'une autre session) : restaurez ce fichier, ou démarrez une fois avec "
                "TCHAP_BOT_CROSS_SIGNING_RESET=true et TCHAP_BOT_PASSWORD",
            )
        signatures = (server.device or {}).get("signatures", {}).get(settings.user_id, {})
        if keys.self_signing.key_id not in signatures:
            return self._add(
                False,
                label,
                f"l'appareil {session.device_id} n'est pas signé par l'identité du bot : "
                "redémarrez le bot (avec TCHAP_BOT_PASSWORD si le serveur le demande)",
            )
        return self._add(True, label, f"identité en place, appareil {session.device_id} signé")

    # --- Model ------------------------------------------------------------------------------
    async def check_model_endpoint(self) -> list[ModelCard] | None:
        label = "Service de modèles"
        settings = self.settings
        client = LLMClient(
            api_key=settings.mistral_api_key.get_secret_value(),
            server_url=settings.mistral_server_url,
            timeout_seconds=HTTP_TIMEOUT_SECONDS,
            max_retries=0,
            max_concurrency=1,
            proxy_url=settings.proxy_url,
        )
        try:
            cards = await client.list_models()
        except LLMError as error:
            detail = str(error).split(": ", 1)[-1]
            hint = (
                "vérifiez MISTRAL_API_KEY"
                if "HTTP 401" in detail or "HTTP 403" in detail
                else "vérifiez MISTRAL_SERVER_URL, le réseau ou le proxy"
            )
            self._add(
                False,
                label,
                f"{settings.mistral_server_url}/v1/models a échoué ({detail}) : {hint}",
            )
            return None
        finally:
            await client.close()
        self._add(
            True, label, f"{settings.mistral_server_url} joignable ({len(cards)} modèles listés)"
        )
        return cards

    def check_models(self, cards: list[ModelCard] | None) -> None:
        settings = self.settings
        listed = {card.id: card for card in cards or []}
        reason = texts.DOCTOR_NOT_CHECKED.format(reason="service de modèles injoignable")
        for model in dict.fromkeys([settings.model, *settings.allowed_models]):
            label = f"Modèle {model}"
            if cards is None:
                self._add(False, label, reason)
            elif model in listed:
                self._add(True, label, "proposé par le service")
            else:
                setting = (
                    "TCHAP_BOT_MODEL" if model == settings.model else "TCHAP_BOT_ALLOWED_MODELS"
                )
                self._add(
                    False,
                    label,
                    f"absent de /v1/models : corrigez {setting} (modèles proposés : "
                    f"{', '.join(sorted(listed)[:8]) or 'aucun'})",
                )
        for name, fields, capability in OPTIONAL_CAPABILITIES:
            label = f"{name} (facultatif)"
            configured = [
                (f, str(getattr(settings, f))) for f in fields if getattr(settings, f, None)
            ]
            if not configured:
                self._add(True, label, "non configuré")
                continue
            field, model = configured[0]
            if cards is None:
                self._add(False, label, reason)
            elif model not in listed:
                self._add(
                    False,
                    label,
                    f"modèle {model} absent de /v1/models : corrigez TCHAP_BOT_{field.upper()}",
                )
            elif (
                capability
                and listed[model].capabilities
                and capability not in listed[model].capabilities
            ):
                self._add(
                    False,
                    label,
                    f"le modèle {model} ne déclare pas la capacité « {capability} » : choisissez-en "
                    f"un autre (TCHAP_BOT_{field.upper()})",
                )
            else:
                self._add(True, label, f"modèle {model} proposé par le service")


def _only_key(obj: Any) -> str | None:
    keys = list((obj or {}).get("keys", {}).values())
    return keys[0] if len(keys) == 1 and isinstance(keys[0], str) else None


async def _load_saved_session(settings: Settings) -> Session | None:
    """The saved session, without creating a database where there is none."""
    if not settings.database_path.is_file():
        return None
    store = await Store.open(settings.database_path)
    try:
        return await store.state.load_session()
    finally:
        await store.close()


def _print(check: Check) -> None:
    print(check.line(), flush=True)


async def run_doctor(config_path: Path | None, report: Callable[[Check], None] = _print) -> int:
    try:
        settings = load_settings(config_path)
    except ConfigError as error:
        for line in str(error).splitlines():
            report(Check(False, "Configuration", line.removeprefix("Configuration invalide : ")))
        print(texts.DOCTOR_SUMMARY_FAILED.format(failed=1, count=1), file=sys.stderr)
        return 1
    source = (
        f"fichier {config_path} et variables d'environnement"
        if config_path
        else "variables d'environnement"
    )
    report(Check(True, "Configuration", f"valide ({source})"))
    doctor = Doctor(settings, report)
    ok = await doctor.run()
    count = len(doctor.checks) + 1
    failed = sum(1 for check in doctor.checks if not check.ok)
    if ok:
        print(texts.DOCTOR_SUMMARY_OK.format(count=count), file=sys.stderr)
        return 0
    print(texts.DOCTOR_SUMMARY_FAILED.format(failed=failed, count=count), file=sys.stderr)
    return 1
