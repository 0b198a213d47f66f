"""Alembic migrations of the trade store (run through ``adapters.store.TradeStore.migrate``)."""
