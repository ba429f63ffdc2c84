#!/bin/sh
# Run by `npm test` first (pretest): the integration tests start a real redis-server (checked with
# redis-cli, TLS certificates made with openssl), an S3 server (moto, else the npm s3rver) and nginx.
# Installs what is missing where this machine allows it (root and apt-get; pip for moto), else
# prints the one command to run and fails before any test.
set -eu

packages=''
{ command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || packages=' redis-server'
command -v openssl >/dev/null 2>&1 || packages="$packages openssl"
# nginx serves a popped app in serve-nginx.test.ts (skipped without it; Caddy likewise, not installed here).
command -v nginx >/dev/null 2>&1 || packages="$packages nginx-light"
if [ -n "$packages" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[pretest] installing$packages for the tests (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $packages >/dev/null
  else
    echo "[pretest] the tests need$packages. Install it, then run npm test again:" >&2
    echo "  sudo apt-get install -y$packages" >&2
    exit 1
  fi
fi

if ! command -v moto_server >/dev/null 2>&1 && ! python3 -c 'import moto.server' 2>/dev/null; then
  if python3 -m pip --version >/dev/null 2>&1 && python3 -m pip install -q 'moto[server]'; then
    echo '[pretest] installed moto for the S3 tests (pip)' >&2
  else
    # Not fatal: the S3 tests then run against s3rver, and those that need IAM are skipped.
    echo "[pretest] no moto: the S3 tests use s3rver and skip the IAM ones. For all of them: pip install 'moto[server]'" >&2
  fi
fi
