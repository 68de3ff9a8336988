"""Shared test helpers: generated audio, seeded stores, real MLflow servers, planted-signal data."""
