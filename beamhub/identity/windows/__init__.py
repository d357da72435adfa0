"""Windows identity: SIDs of users and groups by Samba's idmap_rid rule, and the smb.conf that matches it."""
