"""The domain actors: providers, the router and the cascade, and the adapters they call."""
