"""The terminal: ``relaybot console`` (:mod:`~bots.console.chat`) and ``relaybot ask``
(:mod:`~bots.console.ask`)."""
