#!/usr/bin/env bash
# The main job the README's first command ends in: `airqube demo` starts a devnet (a local chain, a bootstrap
# peer and three provider agents on 127.0.0.1), runs a sample qube with redundancy 3, shows the verified result
# and the settlement, and stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node bin/airqube.js demo
