"""The store wing: the only code that writes SQL.

`Store` opens the database (running the numbered migrations in `bot/store/migrations/`) and
hands out one repository per concern, so a caller names what it touches:
`store.triggers.claim(...)`, `store.messages.in_window(...)`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

from bot.store.database import Database
from bot.store.documents import DocumentsRepository
from bot.store.keys import AwaitingKeysRepository
from bot.store.messages import MessagesRepository
from bot.store.people import PeopleRepository
from bot.store.pilot import PilotRepository
from bot.store.receipts import ReadReceiptsRepository
from bot.store.room_commands import RoomCommandsRepository
from bot.store.rooms import RoomsRepository
from bot.store.schedules import SchedulesRepository
from bot.store.settings import RoomSettingsRepository
from bot.store.state import StateRepository
from bot.store.triggers import TriggersRepository
from bot.store.usage import UsageRepository


class Store:
    """The database and its repositories. Create with `await Store.open(path)`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.state = StateRepository(db)
        self.rooms = RoomsRepository(db)
        self.messages = MessagesRepository(db)
        self.triggers = TriggersRepository(db)
        self.usage = UsageRepository(db)
        self.settings = RoomSettingsRepository(db)
        self.people = PeopleRepository(db)
        self.commands = RoomCommandsRepository(db)
        self.schedules = SchedulesRepository(db)
        self.keys = AwaitingKeysRepository(db)
        self.documents = DocumentsRepository(db)
        self.pilot = PilotRepository(db)
        self.receipts = ReadReceiptsRepository(db)

    @classmethod
    async def open(cls, path: Path, driver: ModuleType = sqlite3) -> Store:
        """`driver`: see `Database.open`."""
        return cls(await Database.open(path, driver))

    async def migrate(self) -> int:
        return await self.db.migrate()

    async def close(self) -> None:
        await self.db.close()
