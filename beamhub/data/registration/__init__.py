"""Registration: the DAQ's data given its ACLs and catalogued with checksums, whole, by path or as watched."""
