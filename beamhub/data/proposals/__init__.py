"""Proposals and their members: who may know a proposal, who may change it, the ACLs that follow its members."""
