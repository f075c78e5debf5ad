# relaybot's Slack bot in HTTP mode (README: Run it in a container).
#   docker build -t relaybot .
#   docker run --env-file .env -p 3000:3000 -v relaybot-data:/data relaybot
# Another command replaces CMD: `docker run ... relaybot discord`, `... relaybot ask "hi"`.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The runtime dependencies only, at the versions the tests ran with (constraints.txt).
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY core ./core
COPY adapters ./adapters
COPY bots ./bots
RUN pip install -c constraints.txt . && rm -rf /src

# The SQLite store lives in a volume, owned by the user the bot runs as.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home relaybot \
    && mkdir /data && chown relaybot:relaybot /data
VOLUME ["/data"]
ENV RELAYBOT_STORE__URL=sqlite:////data/relaybot.db

USER relaybot
WORKDIR /data
EXPOSE 3000

# GET /ready answers 200 when the store takes writes and the model gateway answers, else 503
# (urlopen raises): slim has no curl. The port is CMD's; change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/ready', timeout=4)"]

# relaybot finishes what it shows within [runtime] shutdown_grace (8 s) of SIGTERM, under
# `docker stop`'s 10 s before SIGKILL; raise the stop timeout if you raise the grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["relaybot"]
CMD ["slack", "--http", "--host", "0.0.0.0", "--port", "3000"]
