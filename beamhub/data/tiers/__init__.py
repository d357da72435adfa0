"""Storage tiers: moving a proposal's data between them, its stable path, prefetch to the fast tier."""
