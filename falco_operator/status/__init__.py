"""The artifact status controller: aggregates ArtifactReports into each artifact's status."""
