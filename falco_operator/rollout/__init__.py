"""Staged rollouts of artifacts (issue #28): which generation each node runs, and how a rollout advances."""
