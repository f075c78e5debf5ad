"""The Discord bot (``relaybot discord``).

- :mod:`~bots.discord.bot`: the gateway event handlers, who it answers, the turns it accepts.
- :mod:`~bots.discord.platform`: where a turn's answer is shown (threads, typing, Stop).
- :mod:`~bots.discord.client`: the discord.py client, its intents and endpoints, logging in.
- :mod:`~bots.discord.runner`: the bot logged in and running until a signal.
- :mod:`~bots.discord.channels`: its own calls apart from a reply's (threads, notices, typing).
- :mod:`~bots.discord.stop`: the Stop button under an answer while it streams.
- :mod:`~bots.discord.messages`: messages read into plain words; a thread's name.
- :mod:`~bots.discord.files`: the files a message carries, downloaded and read for the model.
- :mod:`~bots.discord.sessions`: which conversation a DM belongs to.
- :mod:`~bots.discord.settings`: the ``[discord]`` settings.
"""
