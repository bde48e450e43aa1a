"""falco-operator: runs Falco on Kubernetes and keeps it in the state its custom resources describe."""

__version__ = "0.1.0"
