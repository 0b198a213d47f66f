"""Mag7-7DTE: weekly ~7-DTE spreads on the Magnificent Seven (pure decisions)."""
