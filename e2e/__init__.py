"""End-to-end infrastructure: the local control plane harness, the node simulator and shared scenarios."""
