"""The console bot."""
