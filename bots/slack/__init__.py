"""The Slack bot (``relaybot slack``).

- :mod:`~bots.slack.app`: the bolt app, who it answers, and the turns it runs.
- :mod:`~bots.slack.messages`: Slack's message events read into who wrote what, where.
- :mod:`~bots.slack.workspace`: the bot's own Web API calls (names, threads, notices).
- :mod:`~bots.slack.server`: how Slack reaches the bot, Socket Mode or HTTP.
- :mod:`~bots.slack.settings`: the ``[slack]`` settings.
"""
