"""Who you are: users, UID/GID, groups, tokens."""
