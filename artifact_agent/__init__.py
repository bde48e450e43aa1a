"""The artifact agent: a sidecar in every Falco pod that materializes rules, plugins and config."""
