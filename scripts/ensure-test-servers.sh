#!/bin/sh
# Run by `npm test` first (pretest): the integration tests start a real redis-server (checked with
# redis-cli, TLS certificates made with openssl), an S3 server (moto, else the npm s3rver) and nginx.
# Installs what is missing where this machine allows it (root and apt-get; pip for moto), else
# prints the one command to run and fails before any test.
set -eu

packages=''
{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || packages=' redis-server'
command -v openssl >/dev/null 2>&1 || packages="$packages openssl"
# nginx and Caddy serve a popped app in serve-nginx.test.ts (each group skipped without its server).
command -v nginx >/dev/null 2>&1 || packages="$packages nginx-light"
optional=''
command -v caddy >/dev/null 2>&1 || optional='caddy'
if [ -n "$packages" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[pretest] installing$packages for the tests (apt-get)" >&2
    # RUNLEVEL=1: Debian's maintainer scripts then start no nginx or Caddy service on port 80.
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
    apt-get update -qq && apt-get install -y -qq $packages >/dev/null
  else
    echo "[pretest] the tests need$packages. Install it, then run npm test again:" >&2
    echo "  sudo apt-get install -y$packages" >&2
    exit 1
  fi
fi

# Caddy where the distribution has it (Debian 12 does); its tests are skipped elsewhere.
if [ -n "$optional" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $optional >/dev/null 2>&1 || echo "[pretest] no $optional package here: its tests are skipped" >&2
fi

if ! command -v moto_server >/dev/null 2>&1 && ! python3 -c 'import moto.server' 2>/dev/null; then
  if python3 -m pip --version >/dev/null 2>&1 && python3 -m pip install -q 'moto[server]'; then
    echo '[pretest] installed moto for the S3 tests (pip)' >&2
  else
    # Not fatal: the S3 tests then run against s3rver, and those that need IAM are skipped.
    echo "[pretest] no moto: the S3 tests use s3rver and skip the IAM ones. For all of them: pip install 'moto[server]'" >&2
  fi
fi
