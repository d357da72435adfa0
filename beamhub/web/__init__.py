"""The console: server-rendered pages, their static files and their translations, served by the same app."""
