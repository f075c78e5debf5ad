"""The discord bot."""
