"""The sandbox notices when its local model's process dies during the chat (crash, OOM, SIGILL)
and says so, instead of leaving the person with the bot's generic "the model does not answer".

No llama.cpp here: a short Python process stands in for the model's server.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from bot import texts
from sandbox.local_model import ExitWatch, LocalModelServer, ModelExit
from sandbox.options import LLMChoice, SandboxOptions
from sandbox.trial import Sandbox

NO_CORE_FILE = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
DIES_OF_SIGILL = NO_CORE_FILE + "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
EXITS_WITH_3 = "import sys; sys.exit(3)"
# Answers llama.cpp's readiness check (`GET /v1/models`) until it is stopped.
SERVES_MODELS = NO_CORE_FILE + (
    "import http.server, sys\n"
    "class Models(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'{}')\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Models).serve_forever()\n"
)
WATCH_INTERVAL = 0.05
WITHIN = 10.0  # seconds: a bound for a hung test, never a proof


def stand_in(code: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdin=subprocess.DEVNULL)


class StandInServer(LocalModelServer):
    """LocalModelServer's real spawn, start, watch and stop, around a stand-in process."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", SERVES_MODELS, str(self.port)]


class Recorder:
    def __init__(self) -> None:
        self.reports: list[ModelExit] = []

    def __call__(self, ended: ModelExit) -> None:
        self.reports.append(ended)


# --- the watch ------------------------------------------------------------------------------


async def test_the_watch_reports_a_process_killed_by_sigill_once(tmp_path: Path) -> None:
    log_path = tmp_path / "llama-server.log"
    recorder = Recorder()
    process = stand_in(DIES_OF_SIGILL, tmp_path)
    watch = ExitWatch(process, log_path, recorder, interval=WATCH_INTERVAL)
    watch.start()
    async with asyncio.timeout(WITHIN):
        ended = await watch.task
    assert ended == ModelExit(-signal.SIGILL, log_path)
    assert ended.signal_name == "SIGILL"
    assert recorder.reports == [ended]
    assert watch.check() == ended and recorder.reports == [ended], "reported once only"
    await watch.stop()
    assert recorder.reports == [ended]


async def test_the_watch_reports_an_exit_code(tmp_path: Path) -> None:
    recorder = Recorder()
    process = stand_in(EXITS_WITH_3, tmp_path)
    watch = ExitWatch(process, tmp_path / "llama-server.log", recorder, interval=WATCH_INTERVAL)
    watch.start()
    async with asyncio.timeout(WITHIN):
        ended = await watch.task
    assert ended.returncode == 3 and ended.signal_name is None
    assert recorder.reports == [ended]


async def test_a_watch_stopped_first_never_reports_the_stop(tmp_path: Path) -> None:
    recorder = Recorder()
    process = stand_in("import time; time.sleep(60)", tmp_path)
    watch = ExitWatch(process, tmp_path / "llama-server.log", recorder, interval=WATCH_INTERVAL)
    watch.start()
    await asyncio.sleep(0)  # the watch's first poll: the process runs
    assert watch.check() is None
    await watch.stop()
    assert watch.task.done() and watch.task.cancelled()
    process.kill()
    assert process.wait(WITHIN) == -signal.SIGKILL
    assert watch.check() is None, "a stopped watch reports nothing, even when asked"
    assert watch.report is None and recorder.reports == []


# --- the server: its own exit reported, its normal stop not ------------------------------------


async def test_the_local_model_dying_is_reported_with_its_log(tmp_path: Path) -> None:
    server = StandInServer(tmp_path / "model.gguf", tmp_path / "llama-server.log")
    recorder = Recorder()
    try:
        await server.start(timeout=WITHIN)
        watch = server.watch_exit(recorder, interval=WATCH_INTERVAL)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGILL)  # what the kernel sends on an unsupported instruction
        async with asyncio.timeout(WITHIN):
            ended = await watch.task
    finally:
        await server.stop()
    assert ended == ModelExit(-signal.SIGILL, tmp_path / "llama-server.log")
    assert recorder.reports == [ended]


async def test_a_normal_stop_of_the_local_model_is_not_reported(tmp_path: Path) -> None:
    server = StandInServer(tmp_path / "model.gguf", tmp_path / "llama-server.log")
    recorder = Recorder()
    await server.start(timeout=WITHIN)
    watch = server.watch_exit(recorder, interval=WATCH_INTERVAL)
    process_id = server.pid
    assert process_id is not None and watch.check() is None
    await server.stop()  # SIGTERM to the process group, as when the sandbox ends
    assert server.pid is None, "the process was stopped and reaped"
    assert watch.task.done() and watch.report is None
    assert recorder.reports == []


# --- what the sandbox prints, and how a scripted run ends -----------------------------------


def sandbox(out: io.StringIO, *messages: str) -> Sandbox:
    options = SandboxOptions(messages=list(messages), scripted=bool(messages))
    return Sandbox(options, LLMChoice("local", model_path=Path("model.gguf")), out=out)


def test_the_terminal_line_names_the_signal_the_log_and_what_to_do(tmp_path: Path) -> None:
    out = io.StringIO()
    trial = sandbox(out)  # the terminal chat (not scripted)
    log_path = tmp_path / "llama-server.log"
    trial._local_model_exited(ModelExit(-signal.SIGILL, log_path))
    line = texts.SANDBOX_LOCAL_MODEL_EXITED.format(
        how=texts.SANDBOX_EXIT_SIGNAL.format(signal="SIGILL"),
        log_path=log_path,
        restart=texts.SANDBOX_RESTART_INTERACTIVE,
    )
    assert out.getvalue() == line + "\n"
    assert "tué par le signal SIGILL" in line and f"{log_path})" in line
    assert "Quittez (Ctrl-D) et relancez le bac à sable" in line
    assert "--fake-llm" in line and "MISTRAL_API_KEY" in line
    assert trial.failures == 1


def test_an_exit_code_is_named_as_such(tmp_path: Path) -> None:
    out = io.StringIO()
    trial = sandbox(out, "Bonjour")
    trial._local_model_exited(ModelExit(3, tmp_path / "llama-server.log"))
    assert "(code de sortie 3)" in out.getvalue()
    assert texts.SANDBOX_RESTART_SCRIPTED + " le bac à sable" in out.getvalue()


class SilentChat:
    """The chat of a scripted run whose answers never come (the model died)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> str:
        self.sent.append(text)
        return f"$event{len(self.sent)}"

    async def wait_for_answer(self, event_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        await asyncio.Event().wait()
        return True


async def test_a_scripted_run_stops_and_fails_when_the_local_model_dies(tmp_path: Path) -> None:
    out = io.StringIO()
    trial = sandbox(out, "Bonjour", "Encore ?")

    async def bot_running() -> int:
        await asyncio.Event().wait()
        return 0

    bot_task = asyncio.create_task(bot_running())
    log_path = tmp_path / "llama-server.log"
    watch = ExitWatch(
        stand_in(DIES_OF_SIGILL, tmp_path), log_path, trial._local_model_exited, WATCH_INTERVAL
    )
    trial._bot_task = bot_task
    trial._model_watch = watch
    chat = SilentChat()
    watch.start()
    try:
        async with asyncio.timeout(WITHIN):
            await trial._scripted(chat)  # type: ignore[arg-type]
    finally:
        await watch.stop()
        bot_task.cancel()
        await asyncio.gather(bot_task, return_exceptions=True)
    output = out.getvalue()
    assert chat.sent == ["Bonjour"], "the script stopped at the model's death"
    assert output.count("tué par le signal SIGILL") == 1, output
    assert str(log_path) in output and texts.SANDBOX_RESTART_SCRIPTED in output
    assert "Pas de réponse du bot" not in output
    assert trial.failures == 1  # run() then returns EXIT_FAILED (1)
