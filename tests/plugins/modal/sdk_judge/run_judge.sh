#!/usr/bin/env bash
# CTest entry of the SDK judge (judge.mjs): installs Modal's JS SDK with
# scripts/install-modal-js-sdk (nothing when it is there), then runs the judge
# against the fake server. Exits 77, which CTest reports as skipped, with the
# reason on stdout, when node, npm or the SDK cannot be had.
#
#   run_judge.sh REPO_DIR FAKE_MODAL_SERVER
set -uo pipefail
repo="$1"
fake="$2"
skip() {
  echo "SKIP: $*"
  exit 77
}
command -v node >/dev/null 2>&1 || skip "node is not installed (Debian: apt-get install nodejs npm)"
major="$(node -p 'process.versions.node.split(".")[0]')"
# modal@0.11.1 uses ReadableStream.from and AbortSignal.any (node 20).
[ "$major" -ge 20 ] 2>/dev/null || skip "node $(node --version) is too old for Modal's JS SDK (needs 20 or newer)"
sdk="$("$repo/scripts/install-modal-js-sdk")"
case $? in
  0) ;;
  2) skip "node or npm is not installed, so Modal's JS SDK is not either" ;;
  *) skip "Modal's JS SDK could not be installed from npm (see the messages above)" ;;
esac
exec node "$repo/tests/plugins/modal/sdk_judge/judge.mjs" --fake "$fake" --sdk "$sdk"
