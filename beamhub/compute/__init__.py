"""Where sessions run: the Backend protocol and its adapters."""
