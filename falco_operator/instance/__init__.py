"""The Falco controller: pure builders of desired objects and the reconciler that applies them."""
