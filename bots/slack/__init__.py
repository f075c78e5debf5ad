"""The slack bot."""
