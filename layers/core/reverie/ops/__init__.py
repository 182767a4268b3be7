"""Operations: the health probe, the status report, stall detection, and the cost ledger read back."""
