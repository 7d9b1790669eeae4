"""The chat bot: a transport-agnostic core with console, Telegram and Discord adapters."""
