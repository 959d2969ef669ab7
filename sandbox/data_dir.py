"""What the sandbox keeps in its data folder besides Synapse's and the bot's own data: the
accounts (so that a kept folder is reused) and the bot's log file (the terminal is for the chat).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO


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


class LogFile:
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
