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

This module runs the trial; its options and model choice are in options.py, the terminal in
terminal.py, the accounts and log file in data_dir.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot import texts
from sandbox.data_dir import Accounts, LogFile
from sandbox.options import (
    LLMChoice,
    SandboxOptions,
    SandboxUnavailable,
    add_arguments,
    preflight,
)
from sandbox.terminal import Console, file_to_send, start_reading_lines, terminal_restored

if TYPE_CHECKING:  # imported lazily at run time: `tchap-bot --help` must stay light
    from bot.app import BotApp
    from config.settings import Settings
    from sandbox.chat import ChatClient, ShownMessage
    from sandbox.local_model import ExitWatch, LocalModelServer, ModelExit
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


class Sandbox:
    """One sandbox run; `run()` returns the exit code."""

    def __init__(self, options: SandboxOptions, llm: LLMChoice, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.llm = llm
        self.console = Console(out, live_prompt=not options.scripted and sys.stdin.isatty())
        self.failures = 0
        self._bot_task: asyncio.Task[int] | None = None
        self._local_model: LocalModelServer | None = None
        self._model_watch: ExitWatch | None = None

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
            self._local_model = local
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
        logs = LogFile(root / "sandbox.log", self.options.log_level)
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
        if self._local_model is not None:
            # First to stop when the chat ends: the stops that follow are never reported.
            self._model_watch = self._local_model.watch_exit(self._local_model_exited)
            stack.push_async_callback(self._model_watch.stop)
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

    def _local_model_exited(self, ended: ModelExit) -> None:
        """The local model's process ended during the chat (crash, OOM, SIGILL): the bot alone
        would only say that the model does not answer. Counted as a failure (exit code 1)."""
        self.failures += 1
        signal_name = ended.signal_name
        how = (
            texts.SANDBOX_EXIT_SIGNAL.format(signal=signal_name)
            if signal_name is not None
            else texts.SANDBOX_EXIT_CODE.format(code=ended.returncode)
        )
        restart = (
            texts.SANDBOX_RESTART_SCRIPTED
            if self.options.scripted
            else texts.SANDBOX_RESTART_INTERACTIVE
        )
        self.console.notice(
            texts.SANDBOX_LOCAL_MODEL_EXITED.format(
                how=how, log_path=ended.log_path, restart=restart
            )
        )

    def _local_model_ended(self) -> bool:
        """True once the local model's exit is reported (polled now, reported once)."""
        return self._model_watch is not None and self._model_watch.check() is not None

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
                chat.wait_for_answer(event_id, self.options.answer_timeout), model_too=True
            )
            if self._local_model_ended():
                return  # reported as it happened; the next answers could only be error notices
            if not answered:
                self.failures += 1
                self.console.line(
                    texts.SANDBOX_NO_ANSWER.format(seconds=f"{self.options.answer_timeout:g}")
                )
            if self.bot_task.done():
                self.failures += 1
                self.console.line(texts.SANDBOX_BOT_STOPPED.format(code=self.bot_task.result()))
                return

    async def _wait_or_bot_stopped(self, waiting: Awaitable[bool], model_too: bool = False) -> bool:
        """False when the bot stopped first (or, with `model_too`, the local model)."""
        answer = asyncio.ensure_future(waiting)
        ends: set[asyncio.Future[Any]] = {answer, self.bot_task}
        if model_too and self._model_watch is not None:
            ends.add(self._model_watch.task)
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            await asyncio.gather(answer, return_exceptions=True)
            return False
        return bool(answer.result())

    async def _interactive(self, chat: ChatClient) -> None:
        lines = start_reading_lines(self.console)
        pending: list[str] = []
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
    with terminal_restored():
        try:
            return asyncio.run(Sandbox(options, llm).run())
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except asyncio.CancelledError:
            return EXIT_TERMINATED


def main(argv: list[str]) -> int:
    """`tchap-bot sandbox …`: the sandbox parses its own arguments."""
    parser = argparse.ArgumentParser(
        prog="tchap-bot sandbox",
        description="essayer le bot hors ligne : Synapse local, modèle, conversation dans le terminal",
    )
    add_arguments(parser)
    return run_sandbox(parser.parse_args(argv))
