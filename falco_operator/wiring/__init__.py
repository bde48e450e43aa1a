"""Wiring a Falco to the Components it names (Falcosidekick, the k8s-metacollector) through generated artifacts."""
