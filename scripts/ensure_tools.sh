#!/usr/bin/env bash
# Bring the programs a test command needs (Debian packages), or stop with one line saying what to
# install. As root with apt-get they are installed (`apt-get update` once first); otherwise a
# missing one ends the run before any test starts.
#   scripts/ensure_tools.sh chromium   # tests/e2e's Swagger UI browser tests (make test)
#   scripts/ensure_tools.sh docker     # the compose test (make deploy-test): dockerd, debootstrap
set -euo pipefail

missing=()
need() { # command package
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}

for tool in "$@"; do
  case "$tool" in
    chromium) need chromium chromium ;;
    docker) need dockerd docker.io; need debootstrap debootstrap ;;
    *) echo "ensure_tools.sh: unknown tool '$tool' (chromium, docker)" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing Debian packages: ${missing[*]}; install them first: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "[ensure_tools] installing ${missing[*]} (apt-get)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
