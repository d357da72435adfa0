"""SSH keys: users' public keys, validated, and the authorized_keys they answer."""
