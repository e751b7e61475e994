# Sourced by the shell checks in this directory: a scratch directory removed
# on exit ($scratch), fail (counts a failed check), has TEXT PART, and finish
# (exits 1 if any check failed).
set -uo pipefail
scratch="$(mktemp -d "${TMPDIR:-/tmp}/sandrun-check-XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
has() { grep -qF -- "$2" <<<"$1"; }
finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
}
