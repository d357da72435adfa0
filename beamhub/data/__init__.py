"""What users may see: proposals/, registration/, browsing/, h5/, tiers/; below them the rules they share: the
catalogue's models, ACLs and the kernel's access check, request paths, the stable path of a proposal."""
