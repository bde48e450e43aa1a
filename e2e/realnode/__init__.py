"""A real node (kubelet, kube-proxy, containerd, runc, CNI) joined to the local control plane."""
