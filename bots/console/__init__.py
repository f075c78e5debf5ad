"""The terminal: ``relaybot console`` (:mod:`~bots.console.chat`, with files attached by
:mod:`~bots.console.files`) and ``relaybot ask`` (:mod:`~bots.console.ask`)."""
