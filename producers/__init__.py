"""producers room of Lockgate (see docs/CONTRACTS.md)."""
