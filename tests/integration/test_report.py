"""`tchap-bot rapport`: the real command line writes the page, the CSV files, and refuses a
nonsensical period; the page is opened in a real headless Chromium (Debian's package, installed
by tests/browser/install.sh), which must lay out every chart. The screenshot is kept in
`test-output/report/` (or $TCHAP_TEST_OUTPUT) for a human to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.pilot.pseudonym import Pseudonymizer, paris_day
from bot.pilot.report import MASK
from bot.store import Store
from bot.store.pilot import Comment, Feedback, UsageEvent

ROOT = Path(__file__).resolve().parents[2]
SECRET = "secret-du-pilote-pour-les-tests"
SERVERS = {
    "agent.dinum.tchap.gouv.fr": 40,
    "agent.finances.tchap.gouv.fr": 25,
    "agent.interieur.tchap.gouv.fr": 12,
    "agent.culture.tchap.gouv.fr": 3,  # fewer than 5 people: "< 5" everywhere
}
MODELS = ("mistral-small-latest", "mistral-medium-latest")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def output_dir(name: str) -> Path:
    base = Path(os.environ.get("TCHAP_TEST_OUTPUT", ROOT / "test-output"))
    folder = base / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary is not None, "Chromium missing: tests/browser/install.sh (run by make test)"
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TCHAP_BOT_", "MISTRAL_"))
    }
    env.update(
        TCHAP_BOT_HOMESERVER="http://127.0.0.1:1",
        TCHAP_BOT_USER_ID="@assistant:agent.dinum.tchap.gouv.fr",
        TCHAP_BOT_PASSWORD="inutile",
        TCHAP_BOT_DATA_DIR=str(data_dir),
        TCHAP_BOT_PILOT_SECRET=SECRET,
        TCHAP_BOT_FEEDBACK_ENABLED="true",
        TCHAP_BOT_HOMESERVER_DAILY_TOKEN_BUDGET="200000",
        TCHAP_BOT_USER_DAILY_QUESTION_CAP="20",
        MISTRAL_API_KEY="inutile",
    )
    return subprocess.run(
        [sys.executable, "-m", "bot", "rapport", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def fill_database(path: Path) -> list[str]:
    """Three weeks of a pilot: four ministries, two models, feedback, comments. Returns the
    user IDs used, which must appear nowhere in the report."""
    names = Pseudonymizer(SECRET)
    store = await Store.open(path)
    repo = store.pilot
    users: list[str] = []
    now_ms = int(time.time() * 1000)
    for server, people in SERVERS.items():
        for person in range(people):
            user = f"@agent{person}-x.gouv.fr:{server}"
            users.append(user)
            for days_ago in range(0, 21, 1 + person % 3):
                at_ms = now_ms - days_ago * 86_400_000 - person * 1000
                kind = ("question", "question", "summary", "command", "custom")[person % 5]
                outcome = "error" if (person + days_ago) % 17 == 0 else "answered"
                await repo.record(
                    UsageEvent(
                        at_ms=at_ms,
                        day=paris_day(at_ms),
                        kind=kind,
                        outcome="quota" if person == 7 and days_ago == 0 else outcome,
                        homeserver=server,
                        user_hash=names.user(user),
                        room_hash=names.room(f"!salle{person % 6}:{server}"),
                        model=MODELS[person % 2] if kind != "command" else None,
                        prompt_tokens=0 if kind == "command" else 800 + 40 * person,
                        completion_tokens=0 if kind == "command" else 300 + 10 * days_ago,
                        duration_ms=900 + 150 * (person % 9) + 40 * days_ago,
                    )
                )
            for rating_index in range(person % 3):
                at_ms = now_ms - rating_index * 86_400_000
                await repo.add_feedback(
                    Feedback(
                        reaction_event_id=f"$reaction-{server}-{person}-{rating_index}",
                        answer_event_id=f"$answer-{server}-{person}-{rating_index}",
                        room_hash=names.room(f"!salle{person % 6}:{server}"),
                        user_hash=names.user(user),
                        homeserver=server,
                        rating=1 if (person + rating_index) % 4 else -1,
                        kind=("question", "summary", "custom")[(person + rating_index) % 3],
                        model=MODELS[person % 2],
                        day=paris_day(at_ms),
                        at_ms=at_ms,
                    )
                )
    await repo.add_comment(
        Comment(
            at_ms=now_ms,
            day=paris_day(now_ms),
            room_hash=names.room("!salle1:agent.dinum.tchap.gouv.fr"),
            user_hash=names.user(users[0]),
            homeserver="agent.dinum.tchap.gouv.fr",
            text=f"Très utile pour les comptes rendus, écrivez-moi : {users[0]}",
        )
    )
    await store.close()
    return users


async def test_report_page_renders_with_its_charts_in_chromium(tmp_path: Path) -> None:
    out = output_dir("report")
    data_dir = tmp_path / "data"
    users = await fill_database(data_dir / "tchap-bot.sqlite3")
    page = out / "rapport.html"

    result = await asyncio.to_thread(
        run_cli, data_dir, "--sortie", str(page), "--depuis", "30j", "--csv", str(out / "csv")
    )

    assert result.returncode == 0, result.stderr
    assert "Rapport écrit" in result.stdout
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"?https?:", html), "self-contained: nothing fetched"
    for user in users:
        assert user not in html and user.split(":")[0] not in html
    assert "[identifiant masqué]" in html and "Très utile" in html
    assert MASK.replace("<", "&lt;") in html
    charts = html.count('<svg class="chart"')
    assert charts >= 8

    dom = (
        await asyncio.to_thread(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    ).stdout
    drawn = re.search(r'data-charts-drawn="(\d+)"', dom)
    assert drawn is not None, "the page's layout probe did not run"
    assert int(drawn.group(1)) == charts, "every chart has a real size and marks in Chromium"
    assert "Utilisation par serveur Tchap" in dom and "agent.finances.tchap.gouv.fr" in dom

    screenshot = out / "rapport.png"
    await asyncio.to_thread(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        "--window-size=1400,3200",
        "--hide-scrollbars",
        page.as_uri(),
    )
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 50_000, "a blank page compresses to almost nothing; charts do not"

    csv_files = sorted(path.name for path in (out / "csv").iterdir())
    assert "serveurs.csv" in csv_files and "satisfaction.csv" in csv_files
    servers_csv = (out / "csv" / "serveurs.csv").read_text(encoding="utf-8")
    assert f"agent.culture.tchap.gouv.fr,{MASK}" in servers_csv
    assert "agent.dinum.tchap.gouv.fr,40" not in servers_csv  # events, not people, come first
    assert not any(user in servers_csv for user in users)


async def test_report_of_an_empty_database_is_a_valid_page(tmp_path: Path) -> None:
    out = output_dir("report-empty")
    data_dir = tmp_path / "data"
    store = await Store.open(data_dir / "tchap-bot.sqlite3")
    await store.close()
    page = out / "rapport-vide.html"

    result = await asyncio.to_thread(run_cli, data_dir, "--sortie", str(page))

    assert result.returncode == 0, result.stderr
    dom = (
        await asyncio.to_thread(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    ).stdout
    assert "Rien à montrer pour l'instant" in dom
    assert 'data-charts-drawn="0"' in dom
    await asyncio.to_thread(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={out / 'rapport-vide.png'}",
        "--window-size=1200,600",
        page.as_uri(),
    )
    assert (out / "rapport-vide.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("period", ["hier", "0j", "-5j", "2999-01-01", "100000j"])
async def test_nonsensical_period_gets_one_clear_line(tmp_path: Path, period: str) -> None:
    page = tmp_path / "rapport.html"
    result = await asyncio.to_thread(
        run_cli, tmp_path / "data", "--sortie", str(page), f"--depuis={period}"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Période invalide : « {period} ». Exemples : 30j, 12 semaines, 6 mois, 2026-09-01."
    ]
    assert not page.exists()
