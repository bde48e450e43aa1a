"""Logic shared by the operator and the artifact agent: sources, OCI, file layout, validation."""
