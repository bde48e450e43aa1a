"""Scenarios shared by the local suite (tests/) and the kind suite."""
