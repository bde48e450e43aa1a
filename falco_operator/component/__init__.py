"""The Component controller: the k8s-metacollector, Falcosidekick and its UI, each as a Deployment."""
