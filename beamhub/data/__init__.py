"""What users may see: proposals, datasets, ACLs, ingest, migration, download."""
