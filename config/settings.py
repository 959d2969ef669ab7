"""The bot's settings: a TOML file and environment variables, the environment winning.

Environment names are a contract with the administrators (see README): `TCHAP_BOT_*` for the
bot, `MISTRAL_*` for the model endpoint. A wrong or missing value stops the bot at start with
one line naming the setting, never a traceback and never the secret itself.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "TCHAP_BOT_"
DEFAULT_SYSTEM_PROMPT_FILE = Path(__file__).with_name("system_prompt.md")

# The example config's placeholders: a bot started with them would fail later, less clearly.
PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "…", "...", "xxx"})

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Validated configuration. Field `x` is read from `TCHAP_BOT_X` unless an alias says otherwise."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        populate_by_name=True,
    )
    toml_file: ClassVar[Path | None] = None

    # --- Matrix account -------------------------------------------------------------------
    homeserver: str = Field(
        description="Base URL of the homeserver, e.g. https://matrix.agent.dinum.tchap.gouv.fr"
    )
    user_id: str = Field(description="The bot's Matrix user ID")
    password: SecretStr | None = Field(
        default=None,
        description="The bot account's password: used for the first login and cross-signing upload",
    )
    access_token: SecretStr | None = Field(
        default=None, description="An existing access token, instead of a password"
    )
    device_id: str | None = Field(
        default=None, description="Device of that access token (found with /whoami when unset)"
    )
    device_name: str = Field(
        default="tchap-bot", description="Name of the device created at the first login"
    )
    store_passphrase: SecretStr | None = Field(
        default=None,
        description="Encrypts the private keys of the crypto store at rest (not the SQLite data)",
    )
    data_dir: Path = Field(default=Path("./data"), description="SQLite database and crypto store")
    allowed_users: CommaList = Field(
        default_factory=list,
        description="Comma-separated glob patterns of user IDs allowed to invite and use the bot (default: users of the bot's own homeserver)",
    )

    # --- Mistral --------------------------------------------------------------------------
    mistral_api_key: SecretStr = Field(
        validation_alias=AliasChoices("MISTRAL_API_KEY", "mistral_api_key"),
        description="API key of the Mistral endpoint",
    )
    mistral_server_url: str = Field(
        default="https://api.mistral.ai",
        validation_alias=AliasChoices("MISTRAL_SERVER_URL", "mistral_server_url"),
        description="Base URL of the Mistral-compatible API, without /v1",
    )
    model: str = Field(
        default="mistral-small-latest", description="Mistral model used unless a room chose another"
    )
    allowed_models: CommaList = Field(
        default_factory=list,
        description="Models moderators may choose with !modele (comma-separated; always includes `model`)",
    )
    temperature: float = Field(
        default=0.3,
        ge=0.0,
        le=1.5,
        description="Sampling temperature unless a room chose another",
    )
    max_answer_tokens: int = Field(
        default=1500,
        ge=16,
        le=32_000,
        description="Longest answer the model may write",
    )
    context_token_budget: int = Field(
        default=12_000,
        ge=500,
        le=1_000_000,
        description="Tokens of prompt + room history + answer sent per question (counted with Mistral's tokenizer)",
    )
    llm_timeout_seconds: float = Field(
        default=90.0,
        gt=0,
        le=900,
        description="Timeout of one LLM attempt (a question gets at most twice this)",
    )
    llm_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries on 429, 5xx, timeouts and connection errors",
    )
    llm_max_concurrency: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="LLM calls in flight at once, all rooms together; the rest wait",
    )
    llm_retry_initial_ms: int = Field(
        default=500,
        ge=1,
        le=60_000,
        description="First retry delay (doubles each time)",
    )
    llm_retry_max_ms: int = Field(
        default=10_000,
        ge=1,
        le=300_000,
        description="Cap of the retry delay",
    )
    llm_circuit_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive failed questions that open the circuit (fail fast)",
    )
    llm_circuit_cooldown_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=3600,
        description="Time before one question probes a failed LLM again",
    )
    system_prompt: str | None = Field(default=None, description="Replaces config/system_prompt.md")
    system_prompt_file: Path | None = Field(
        default=None, description="File replacing config/system_prompt.md"
    )

    # --- Voice messages and images ----------------------------------------------------------
    transcription_model: str = Field(
        default="voxtral-mini-latest",
        description="Speech-to-text model for voice messages (Voxtral; empty: no transcription)",
    )
    transcription_language: str = Field(
        default="fr",
        max_length=10,
        description="Language code of voice messages (empty: detected by the model)",
    )
    vision_model: str = Field(
        default="mistral-small-latest",
        description="Vision-capable model that reads images (empty: images not supported)",
    )
    voice_messages: bool = Field(
        default=True,
        description="Transcribe and answer voice messages (rooms may turn it off: !config voix non)",
    )
    voice_max_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3 * 3600,
        description="Longest voice message transcribed (seconds, the file's real duration)",
    )
    image_max_pixels: int = Field(
        default=50_000_000,
        ge=10_000,
        le=500_000_000,
        description="Largest image decoded (width × height): refuses decompression bombs",
    )
    image_max_side_px: int = Field(
        default=1540,
        ge=64,
        le=8192,
        description="Images are downscaled to fit this many pixels per side before the model",
    )
    image_question_wait_seconds: float = Field(
        default=20.0,
        ge=0,
        le=600,
        description="In a DM, how long an image waits for the question typed after it (then it is described)",
    )

    # --- Behaviour ------------------------------------------------------------------------
    catch_up_window_minutes: float = Field(
        default=15.0,
        ge=0,
        le=24 * 60,
        description="After a restart or a homeserver outage, questions that came meanwhile are answered if younger than this (older ones are stored, never answered)",
    )
    command_prefixes: CommaList = Field(
        default_factory=lambda: ["!", "/"],
        description="Command prefixes (comma-separated)",
    )
    moderator_power_level: int = Field(
        default=50,
        ge=0,
        le=100,
        description="Room power level needed for moderator commands",
    )
    retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days stored messages are kept (rooms may choose otherwise)",
    )
    streaming: bool = Field(
        default=True, description="Show answers as they are written (edited message)"
    )
    stream_edit_interval_seconds: float = Field(
        default=1.0,
        ge=0.2,
        le=30,
        description="At most one edit per this interval while streaming",
    )
    sync_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="Long-poll timeout of /sync",
    )
    homeserver_retry_max_seconds: float = Field(
        default=30.0,
        ge=0.1,
        le=600,
        description="Cap of the backoff while the homeserver is unreachable",
    )
    encrypt_for_unverified_devices: bool = Field(
        default=True, description="Like Element's default; false refuses unverified devices"
    )
    cross_signing_reset: bool = Field(
        default=False,
        description="Replace a cross-signing identity the bot does not hold (one start, password)",
    )
    undecryptable_notice_seconds: float = Field(
        default=60.0,
        ge=0,
        le=24 * 3600,
        description="How long to wait for a missing room key before telling the sender once",
    )
    user_rate_limit_per_minute: int = Field(
        default=10,
        ge=0,
        le=10_000,
        description="Questions per user per minute (0: unlimited)",
    )
    room_rate_limit_per_minute: int = Field(
        default=30,
        ge=0,
        le=10_000,
        description="Questions per room per minute (0: unlimited)",
    )
    # --- Pilot evaluation: statistics, feedback, quotas --------------------------------------
    pilot_secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC that pseudonymizes people and rooms in the pilot's statistics; usage statistics are recorded only when set (16 characters or more; required by feedback and quotas)",
    )
    feedback_enabled: bool = Field(
        default=False,
        description="Record 👍/👎 reactions on answers and accept `!avis` comments (needs pilot_secret)",
    )
    homeserver_daily_token_budget: int = Field(
        default=0,
        ge=0,
        description="Tokens per homeserver (ministry) per day, Paris time (0: no budget; needs pilot_secret)",
    )
    user_daily_question_cap: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Questions to the model per person per day, Paris time (0: no cap; needs pilot_secret)",
    )
    large_summary_messages: int = Field(
        default=300,
        ge=1,
        le=100_000,
        description="A !resume over more messages than this is a large summary (room cooldown)",
    )
    large_summary_cooldown_seconds: float = Field(
        default=600.0,
        ge=0,
        le=24 * 3600,
        description="Pause between two large summaries in one room (0: none)",
    )
    proxy_url: str | None = Field(
        default=None,
        description="HTTP(S) proxy for the homeserver and the model (default: HTTPS_PROXY/HTTP_PROXY; NO_PROXY honoured)",
    )
    health_host: str = Field(
        default="127.0.0.1",
        description="Address of /healthz, /readyz and /metrics (0.0.0.0 in the container image)",
    )
    health_port: int = Field(default=8080, ge=0, le=65_535, description="0 disables the endpoint")

    # --- Attachments ----------------------------------------------------------------------
    attachment_max_mb: float = Field(
        default=20.0,
        gt=0,
        le=1024,
        description="Largest file the bot downloads (MB, checked on the declared and the real size)",
    )
    attachment_download_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Timeout of one attachment download from the homeserver",
    )

    # --- Documents ------------------------------------------------------------------------
    document_max_pages: int = Field(
        default=300, ge=1, le=10_000, description="Longest document read (pages)"
    )
    document_max_inflated_mb: float = Field(
        default=100.0,
        gt=0,
        le=4096,
        description="Largest decompressed size of a DOCX/ODT (MB; zip bombs are refused)",
    )
    document_extract_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Time allowed to read one document"
    )
    document_workers: int = Field(
        default=1, ge=1, le=32, description="Worker processes reading documents"
    )
    ocr_model: str = Field(
        default="mistral-ocr-latest",
        description="OCR model for pages without a text layer (empty: no OCR)",
    )
    embedding_model: str = Field(
        default="mistral-embed",
        description="Embedding model for document search (empty: full-text search only)",
    )
    document_context_tokens: int = Field(
        default=4000,
        ge=0,
        le=1_000_000,
        description="Tokens of document passages sent with a question (0: documents off)",
    )
    document_passages: int = Field(
        default=6, ge=1, le=50, description="Passages of the room's documents a question may get"
    )
    document_min_similarity: float = Field(
        default=0.75,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a passage needs to be found by meaning alone",
    )
    document_recent_minutes: float = Field(
        default=60.0,
        ge=0,
        le=7 * 24 * 60,
        description="In a DM, documents sent this recently before a question are part of it",
    )

    # --- Logs -----------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="debug, info, warning or error"
    )
    log_format: Literal["console", "json"] = Field(default="console", description="console or json")
    log_message_content: bool = Field(
        default=False, description="Log message bodies and prompts (debugging only: personal data)"
    )

    @field_validator("allowed_users", "allowed_models", "command_prefixes", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("homeserver", "mistral_server_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or len(value) < len("http://x"):
            raise ValueError("doit être une URL http:// ou https://")
        return value

    @field_validator("mistral_server_url")
    @classmethod
    def _no_v1_suffix(cls, value: str) -> str:
        if value.endswith("/v1"):
            raise ValueError("l'URL de base ne doit pas finir par /v1 (le SDK l'ajoute)")
        return value

    @field_validator("user_id")
    @classmethod
    def _matrix_user_id(cls, value: str) -> str:
        value = value.strip()
        local, _, server = value[1:].partition(":")
        if not value.startswith("@") or not local or not server:
            raise ValueError("doit être un identifiant Matrix complet, comme @bot:serveur")
        return value

    @field_validator("command_prefixes")
    @classmethod
    def _non_empty_prefixes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("au moins un préfixe de commande est nécessaire")
        return value

    @field_validator("mistral_api_key")
    @classmethod
    def _non_empty_secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("ne doit pas être vide")
        return value

    @field_validator("mistral_api_key", "password", "access_token", "store_passphrase")
    @classmethod
    def _not_a_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "valeur d'exemple de config/example.toml : remplacez-la par le vrai secret"
            )
        return value

    @model_validator(mode="after")
    def _credentials_and_defaults(self) -> Settings:
        if self.password is None and self.access_token is None:
            raise ValueError("TCHAP_BOT_PASSWORD ou TCHAP_BOT_ACCESS_TOKEN doit être défini")
        if not self.allowed_users:
            self.allowed_users = [f"@*:{self.server_name}"]
        self._pilot_secret_needed()
        if not self.allowed_models:
            self.allowed_models = [self.model]
        elif self.model not in self.allowed_models:
            self.allowed_models = [self.model, *self.allowed_models]
        return self

    def _pilot_secret_needed(self) -> None:
        """Feedback and quotas count people: without the HMAC key they cannot, so refuse to start."""
        secret = self.pilot_secret
        if secret is not None and len(secret.get_secret_value().strip()) < 16:
            raise ValueError("TCHAP_BOT_PILOT_SECRET doit faire au moins 16 caractères")
        uses = [
            name
            for name, on in (
                ("TCHAP_BOT_FEEDBACK_ENABLED", self.feedback_enabled),
                ("TCHAP_BOT_HOMESERVER_DAILY_TOKEN_BUDGET", self.homeserver_daily_token_budget),
                ("TCHAP_BOT_USER_DAILY_QUESTION_CAP", self.user_daily_question_cap),
            )
            if on
        ]
        if uses and secret is None:
            raise ValueError(f"TCHAP_BOT_PILOT_SECRET est nécessaire pour {', '.join(uses)}")

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]

    @property
    def database_path(self) -> Path:
        return self.data_dir / "tchap-bot.sqlite3"

    @property
    def attachment_max_bytes(self) -> int:
        return int(self.attachment_max_mb * 1_000_000)

    @property
    def crypto_store_dir(self) -> Path:
        return self.data_dir / "crypto"

    def is_allowed_user(self, user_id: str) -> bool:
        return any(fnmatch.fnmatchcase(user_id, pattern) for pattern in self.allowed_users)

    def default_system_prompt(self) -> str:
        if self.system_prompt:
            return self.system_prompt
        path = self.system_prompt_file or DEFAULT_SYSTEM_PROMPT_FILE
        return path.read_text(encoding="utf-8")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)


class ConfigError(Exception):
    """Invalid configuration, already phrased for the administrator (one line per problem)."""


def setting_name(field: str) -> str:
    """The name an administrator sets (environment variable) for a settings field."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        if isinstance(first, str):
            return first
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(toml_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings, or raise ConfigError whose message names each faulty setting."""
    if toml_file is not None and not toml_file.is_file():
        raise ConfigError(f"Fichier de configuration introuvable : {toml_file}")

    class _FileSettings(Settings):
        pass

    _FileSettings.toml_file = toml_file
    try:
        return _FileSettings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    except ValueError as error:  # TOML syntax errors
        raise ConfigError(f"Configuration illisible ({toml_file}) : {error}") from None


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        location = [str(part) for part in problem["loc"]]
        message = problem["msg"].removeprefix("Value error, ")
        if not location:
            lines.append(f"Configuration invalide : {message}")
            continue
        name = location[0]
        if name in Settings.model_fields:
            name = setting_name(name)
        elif name.upper() in {"MISTRAL_API_KEY", "MISTRAL_SERVER_URL"}:
            name = name.upper()
        if problem["type"] == "missing":
            message = "paramètre obligatoire manquant"
        elif problem["type"] == "extra_forbidden":
            message = "paramètre inconnu"
        lines.append(f"Configuration invalide : {name} — {message}")
    return "\n".join(lines)
