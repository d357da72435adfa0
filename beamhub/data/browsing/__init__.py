"""Browsing and download: datasets, files, readers and the SMB share; each file shown as its ACL lets one read."""
