"""Record and ledger builders shared by the tests and the benchmarks (one shape each)."""
