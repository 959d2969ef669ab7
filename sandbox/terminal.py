"""The sandbox's terminal: how the chat is printed and how typed or piped lines are read.

Reading happens in a daemon thread so that the event loop keeps printing answers while the
user types, and so that leaving never waits for a blocked read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from bot import texts

SEND_FILE_COMMANDS = ("/envoyer", "/send")

LineSink = Callable[[str | None], None]
"""Takes each line read, then None at the end of the input."""


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
        self.notice(format_message(label, text))

    def notice(self, block: str) -> None:
        """Print during the chat: above the prompt, the half-typed line redrawn below."""
        if not self.live_prompt:
            self.line(block)
            return
        typed = ""
        with contextlib.suppress(ImportError):
            import readline

            typed = readline.get_line_buffer()
        self.out.write(f"\r\x1b[K{block}\n{self.prompt}{typed}")
        self.out.flush()


def start_reading_lines(console: Console) -> asyncio.Queue[str | None]:
    """Read stdin in a daemon thread (the terminal's prompt, or a pipe when there is none) into
    the returned queue: each line, then None at the end of the input."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def put(line: str | None) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, line)

    reader = (
        functools.partial(_read_terminal, put, console.prompt)
        if console.live_prompt
        else functools.partial(_read_pipe, put)
    )
    threading.Thread(target=reader, name="sandbox-input", daemon=True).start()
    return lines


def _read_terminal(put: LineSink, prompt: str) -> None:
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


def _read_pipe(put: LineSink) -> None:
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


def file_to_send(line: str) -> Path | None:
    """`/envoyer CHEMIN` (or `/send CHEMIN`): the file to upload, `~` expanded."""
    word, _, rest = line.strip().partition(" ")
    if word.lower() not in SEND_FILE_COMMANDS or not rest.strip():
        return None
    return Path(rest.strip().strip("'\"")).expanduser()


@contextlib.contextmanager
def terminal_restored() -> Iterator[None]:
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
