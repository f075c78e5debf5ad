"""What the bots say to people in their own words, defined once for every platform.

The model's answers are not here; these are the short notices a bot posts around them.
"""

from __future__ import annotations

from adapters.live import (
    MODEL_BUSY,
    MODEL_RETRYING,
    MODEL_SLOW,
    STOPPED,
    THINKING,
    WAITING_FOR_SLOT,
)

__all__ = [
    "BROKEN",
    "FEEDBACK_THANKS",
    "INTERRUPTED",
    "MEMORY_DOWN",
    "MODEL_BUSY",
    "MODEL_RETRYING",
    "MODEL_SLOW",
    "NEW_CONVERSATION",
    "NOT_YOURS",
    "OFFLINE",
    "ONLY_A_MENTION",
    "ONLY_FILES",
    "RESTARTING",
    "STOPPED",
    "THINKING",
    "TOO_LONG",
    "WAITING_FOR_SLOT",
]

NOT_YOURS = "Only the person who asked can stop this answer."
"""Told, privately, to someone who presses Stop on an answer to somebody else."""
FEEDBACK_THANKS = "Thanks for the feedback."
"""Told, privately, to someone who presses 👍 or 👎 under an answer."""
NEW_CONVERSATION = "Starting a new conversation."
TOO_LONG = (
    "That message is too long for me ({length:,} characters; I read up to {limit:,}). "
    "Could you shorten it?"
)
BROKEN = "Sorry, something went wrong before I could answer. Please try again."
ONLY_A_MENTION = "(They mentioned you without saying anything else.)"
"""What the model reads when a message was only a mention of the bot."""
ONLY_FILES = "(They sent the attached files without saying anything else.)"
"""What the model reads as the text of a message made of files alone (and a mention)."""
INTERRUPTED = "I was interrupted while answering — please ask again."
"""A turn whose worker died after a tool ran: it is not run again (a tool never runs twice)."""
OFFLINE = "I was offline when you asked — please ask again."
"""A turn found unanswered after a restart, older than ``[store] recovery_max_age``."""
RESTARTING = "Restarting — I'll continue in a moment."
"""An answer cut short by a shutdown before any tool ran: the next process answers it again."""
MEMORY_DOWN = "I can't reach my memory right now — please try again in a minute."
"""The store failed while a message was being taken in (a full disk, a damaged file): it was
not accepted, so nothing will answer it unless it comes again."""
