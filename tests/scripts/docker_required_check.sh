#!/usr/bin/env bash
# Runs one Docker test of a test binary against an engine that does not exist
# (DOCKER_HOST names a socket path in a fresh temp dir) and checks how its
# fixture ends it:
#   - SANDRUN_REQUIRE_DOCKER=1, or CI=true: the test FAILS, giving the reason;
#   - neither (or SANDRUN_REQUIRE_DOCKER=0 with CI=true): it is SKIPPED, with it.
# usage: docker_required_check.sh TEST_BINARY GTEST_FILTER
binary="$(realpath -- "${1:?usage: docker_required_check.sh TEST_BINARY GTEST_FILTER}")"
filter="${2:?usage: docker_required_check.sh TEST_BINARY GTEST_FILTER}"
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"
host="unix://$scratch/no-engine/docker.sock"

# run LABEL VAR=VALUE...: sets $rc and $out.
run() {
  local label="$1"
  shift
  out="$(cd "$scratch" && env -u CI -u SANDRUN_REQUIRE_DOCKER DOCKER_HOST="$host" "$@" \
           "$binary" --gtest_filter="$filter" --gtest_color=no 2>&1)"
  rc=$?
  echo "== $label: exit $rc"
  grep -E '^\[ *(RUN|OK|SKIPPED|FAILED|PASSED) *\]|required|Docker engine|docker' <<<"$out" |
    head -n 12 | sed 's/^/   /'
}
ran_one() { has "$out" "[==========] 1 test from" || fail "$1: '$filter' is not exactly one test"; }

for setting in SANDRUN_REQUIRE_DOCKER=1 CI=true; do
  run "$setting" "$setting"
  ran_one "$setting"
  [ "$rc" != 0 ] || fail "$setting: a missing engine passed"
  has "$out" "[  FAILED  ]" || fail "$setting: the test did not fail"
  has "$out" "[  SKIPPED ]" && fail "$setting: the test was skipped"
  has "$out" "Docker is required here" || fail "$setting: the failure does not say Docker is required"
  has "$out" "$scratch/no-engine/docker.sock" || has "$out" "no Docker engine" ||
    fail "$setting: the failure does not give the reason"
done

for setting in "SANDRUN_REQUIRE_DOCKER=" "SANDRUN_REQUIRE_DOCKER=0 CI=true"; do
  # shellcheck disable=SC2086  # two assignments in one word on purpose
  run "not required ($setting)" $setting
  ran_one "$setting"
  [ "$rc" = 0 ] || fail "not required ($setting): exit $rc, not 0"
  has "$out" "[  SKIPPED ]" || fail "not required ($setting): the test was not skipped"
  has "$out" "no Docker engine" || fail "not required ($setting): the skip gives no reason"
done

finish
