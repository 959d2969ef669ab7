# tchap-bot: a small image to run the bot (`tchap-bot run`) as a non-root user.
#
#   docker build -t tchap-bot .
#   docker run -d --name tchap-bot -v tchap-bot-data:/data \
#     -e TCHAP_BOT_HOMESERVER=https://matrix.agent.dinum.tchap.gouv.fr \
#     -e TCHAP_BOT_USER_ID=@assistant-ia-dinum.gouv.fr:agent.dinum.tchap.gouv.fr \
#     -e TCHAP_BOT_PASSWORD=... -e MISTRAL_API_KEY=... tchap-bot
#
# Settings come from TCHAP_BOT_* / MISTRAL_* variables (see README). Everything the bot keeps
# (its session, the sync token, the encryption keys, the SQLite database) lives in /data: keep
# that volume, or the bot logs in again as a new device that cannot read older encrypted rooms.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# The install step is the README's, word for word (docs/install-steps.txt; checked by
# tests/integration/test_install_steps.py).
RUN python3 -m venv .venv && .venv/bin/pip install .

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tchapbot \
    && mkdir -p /data \
    && chown tchapbot /data
USER tchapbot

ENV PATH=/app/.venv/bin:$PATH \
    TCHAP_BOT_DATA_DIR=/data \
    TCHAP_BOT_LOG_FORMAT=json
VOLUME /data

# /healthz answers 200 while the process and its event loop run (TCHAP_BOT_HEALTH_PORT, 8080 by
# default, on 127.0.0.1 inside the container). Python's urllib: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM (docker stop) finishes the answers in progress, then exits.
STOPSIGNAL SIGTERM
CMD ["tchap-bot", "run"]
