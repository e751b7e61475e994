#!/usr/bin/env bash
# Checks that bench/run-docker and bench/run-foundation find a relative build
# directory (--build-dir build, or SANDRUN_BUILD_DIR) after they change
# directory. Runs copies of the real scripts in a scratch tree where
# scripts/bootstrap, scripts/docker-test-env, cmake and docker are stand-ins,
# and the build directory holds stand-in `sandrun` and bench drivers that log
# how they were called (the driver then fails, ending the bench early).
# usage: bench_build_dir_check.sh SOURCE_DIR
src="${1:?usage: bench_build_dir_check.sh SOURCE_DIR}"
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"

tree="$scratch/repo"
mkdir -p "$tree/bench" "$tree/scripts" "$scratch/bin" "$scratch/caller"
cp "$src/bench/run-docker" "$src/bench/run-foundation" "$tree/bench/"
log="$scratch/log"
stand_in() {  # stand_in PATH EXIT_CODE: logs "name args", exits EXIT_CODE
  mkdir -p "$(dirname "$1")"
  printf '#!/usr/bin/env bash\necho "$0 $*" >>"%s"\nexit %s\n' "$log" "$2" >"$1"
  chmod +x "$1"
}
stand_in "$tree/scripts/bootstrap" 0
stand_in "$tree/scripts/docker-test-env" 0
stand_in "$scratch/bin/cmake" 0
stand_in "$scratch/bin/docker" 0
# A build directory with stand-ins, once beside the caller and once in the repo.
for build in "$scratch/caller/build" "$tree/repo-build"; do
  stand_in "$build/core/cli/sandrun" 0
  stand_in "$build/bench/sandrun_bench_docker" 3
  stand_in "$build/bench/sandrun_bench_spawn" 3
done

# check NAME BUILD_DIR ARGS...: runs ARGS from $scratch/caller and expects the
# bench driver of BUILD_DIR to have been called with sandrun's absolute path.
check() {
  local name="$1" build="$2"
  shift 2
  : >"$log"
  local out rc
  out="$(cd "$scratch/caller" && env -u SANDRUN_BUILD_DIR PATH="$scratch/bin:$PATH" "$@" 2>&1)"
  rc=$?
  echo "== $name: exit $rc"
  sed 's/^/   /' "$log"
  grep -qF -- "$build/core/cli/sandrun --version" "$log" ||
    fail "$name: sandrun in $build was not run: $out"
  grep -qE -- "^$build/bench/sandrun_bench_(docker|spawn) [a-z]+ .*--sandrun $build/core/cli/sandrun( |$)" \
    "$log" || fail "$name: the bench driver in $build was not run with sandrun's absolute path: $out"
  [ "$rc" = 3 ] || fail "$name: exit $rc, not the driver's 3: $out"
}

check "run-docker --build-dir build" "$scratch/caller/build" \
  bash "$tree/bench/run-docker" --build-dir build --runs 10
check "run-docker SANDRUN_BUILD_DIR=repo-build" "$tree/repo-build" \
  env SANDRUN_BUILD_DIR=repo-build bash "$tree/bench/run-docker" --runs 10
check "run-foundation --build-dir build" "$scratch/caller/build" \
  bash "$tree/bench/run-foundation" --build-dir build
check "run-foundation SANDRUN_BUILD_DIR=repo-build" "$tree/repo-build" \
  env SANDRUN_BUILD_DIR=repo-build bash "$tree/bench/run-foundation"

finish
