# tchap-bot: a small image to run the bot (`tchap-bot run`) as a non-root user.
#
#   docker build -t tchap-bot .
#   docker run -d --name tchap-bot --read-only --tmpfs /tmp -v tchap-bot-data:/data \
#     -e TCHAP_BOT_HOMESERVER=https://matrix.agent.dinum.tchap.gouv.fr \
#     -e TCHAP_BOT_USER_ID=@assistant-ia-dinum.gouv.fr:agent.dinum.tchap.gouv.fr \
#     -e TCHAP_BOT_PASSWORD=... -e MISTRAL_API_KEY=... tchap-bot
#
# Settings come from TCHAP_BOT_* / MISTRAL_* variables (see README). Everything the bot keeps
# (its session, the sync token, the encryption keys, the SQLite database) lives in /data: keep
# that volume, or the bot logs in again as a new device that cannot read older encrypted rooms.
# Nothing else is written at run time: the root filesystem can be read-only (--read-only).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# The install step is the README's, word for word (docs/install-steps.txt; checked by
# tests/integration/test_install_steps.py): every dependency pinned and hash-checked.
RUN python3 -m venv .venv && .venv/bin/pip install --require-hashes -r requirements.lock -r requirements-build.lock && .venv/bin/pip install --no-deps --no-build-isolation .

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tchapbot \
    && mkdir -p /data \
    && chown tchapbot /data \
    && chmod 700 /data
USER 10001

ENV PATH=/app/.venv/bin:$PATH \
    HOME=/data \
    TCHAP_BOT_DATA_DIR=/data \
    TCHAP_BOT_LOG_FORMAT=json \
    TCHAP_BOT_HEALTH_HOST=0.0.0.0 \
    TCHAP_BOT_HEALTH_PORT=8080
VOLUME /data
EXPOSE 8080

# /healthz answers 200 while the process and its event loop run. `tchap-bot healthcheck` reads
# TCHAP_BOT_HEALTH_PORT (and TCHAP_BOT_HEALTH_HOST), so the check follows the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["tchap-bot", "healthcheck"]

# SIGTERM (docker stop) finishes the answers in progress for up to 5 s, then exits (within 10 s).
STOPSIGNAL SIGTERM
CMD ["tchap-bot", "run"]
