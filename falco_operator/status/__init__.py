"""The artifact status controllers: each artifact's status, aggregated from the agents' ArtifactReports."""

from .aggregate import Agent, Target, artifact_status, same_status, targeted
from .reconciler import ArtifactStatusReconciler
from .setup import setup_status_controllers

__all__ = [
    "Agent",
    "ArtifactStatusReconciler",
    "Target",
    "artifact_status",
    "same_status",
    "setup_status_controllers",
    "targeted",
]
