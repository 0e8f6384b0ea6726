"""Provider adapters: one per wire protocol, each behind the `Adapter` interface."""
