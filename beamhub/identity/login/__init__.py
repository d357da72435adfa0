"""Logging in: local passwords, PAM, OpenID Connect, login sessions; who is logged in."""
