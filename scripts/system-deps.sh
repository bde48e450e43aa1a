#!/usr/bin/env bash
# The Debian packages `make demo`, `make test` and `make e2e-local` need from the machine, checked (and installed) in one place.
#
#   scripts/system-deps.sh [PACKAGE...]   # the project's packages, and these too
#
# All installed: says nothing and exits 0 (one dpkg-query call). Some missing: as root, installs them
# (apt-get update, apt-get install); otherwise prints the one command to run and exits 1.
# SYSTEM_DEPS_INSTALL=no never installs, even as root (it only reports what is missing).
set -euo pipefail

PACKAGES=(
  # `python3 -m venv` for the project's virtualenv; certificates for Go module and PyPI downloads.
  python3-venv ca-certificates
  # Shared libraries of the real Falco the demo and the tests run (the build in ../shared/falco).
  libjsoncpp25 libre2-9 libtbb12 libyaml-cpp0.7 libcurl4
  # The loopback OCI registry (the CNCF distribution server) and htpasswd for its users.
  docker-registry apache2-utils
  # The real node of `make e2e-local` (e2e/realnode): runc's cgo build with seccomp, the static pause binary,
  # kube-proxy's and CNI's iptables and conntrack, the Debian base image (debootstrap) and the product image
  # built from the Containerfile (podman, with runc: crun refuses hybrid cgroup hosts).
  gcc libc6-dev pkg-config libseccomp-dev iptables conntrack debootstrap podman runc
)
PACKAGES+=("$@")

if ! command -v dpkg-query >/dev/null 2>&1; then
  # Not Debian: the names above are Debian's; check the two commands the harness runs by name.
  for command in htpasswd; do
    if ! command -v "$command" >/dev/null 2>&1; then
      echo "system-deps: '$command' is missing; install your system's package for it (Debian: apache2-utils)" >&2
      exit 1
    fi
  done
  if ! command -v docker-registry >/dev/null 2>&1 && ! command -v registry >/dev/null 2>&1; then
    echo "system-deps: no OCI registry binary (docker-registry or registry); install the CNCF distribution" \
      "server (Debian: docker-registry)" >&2
    exit 1
  fi
  exit 0
fi

installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)"
missing=()
for package in "${PACKAGES[@]}"; do
  if ! grep -qx "$package installed" <<<"$installed"; then
    missing+=("$package")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && [ "${SYSTEM_DEPS_INSTALL:-yes}" != no ]; then
  echo "system-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo "
{
  echo "system-deps: these Debian packages are missing: ${missing[*]}"
  echo "Install them with this command, then run make again:"
  echo "  ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${missing[*]}"
} >&2
exit 1
