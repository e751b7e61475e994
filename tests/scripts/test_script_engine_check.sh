#!/usr/bin/env bash
# Checks scripts/test's handling of the Docker engine, on a copy of the real
# scripts in a scratch tree where bootstrap, build, docker-test-env, curl,
# ctest and apt-get are stand-ins that only log what they are asked:
#   - a run that started an engine stops it, after ctest has run in the build
#     directory (the stop must survive the `cd`), also when ctest fails;
#   - a run that found an engine already answering leaves it alone;
#   - an engine that cannot start: a skip notice elsewhere, a failure (and no
#     ctest) with CI=true or SANDRUN_REQUIRE_DOCKER=1, and .ci/run sets the flag.
# usage: test_script_engine_check.sh SOURCE_DIR
src="${1:?usage: test_script_engine_check.sh SOURCE_DIR}"
source "$(dirname "${BASH_SOURCE[0]}")/check_lib.sh"

tree="$scratch/repo"
mkdir -p "$tree/build" "$tree/build-static" "$tree/.ci" "$scratch/bin"
cp -R "$src/scripts" "$tree/scripts"
cp "$src/.ci/run" "$tree/.ci/run"
log="$scratch/log"

stand_in() {  # stand_in PATH BODY: a script that logs its name, args and cwd, then runs BODY
  cat >"$1" <<STUB
#!/usr/bin/env bash
echo "\$(basename "\$0") \$* | cwd=\$PWD | require=\${SANDRUN_REQUIRE_DOCKER-unset}" >>"$log"
$2
STUB
  chmod +x "$1"
}
stand_in "$tree/scripts/bootstrap" 'exit 0'
stand_in "$tree/scripts/build" 'exit 0'
stand_in "$tree/scripts/docker-test-env" \
  '[ "${1:-}" = --stop ] && exit 0; exit "${FAKE_START_RC:-0}"'
stand_in "$scratch/bin/ctest" 'exit "${FAKE_CTEST_RC:-0}"'
stand_in "$scratch/bin/apt-get" 'exit 0'
# The engine "answers" only when FAKE_ENGINE_UP=1.
cat >"$scratch/bin/curl" <<'STUB'
#!/usr/bin/env bash
[ "${FAKE_ENGINE_UP:-0}" = 1 ] && { echo OK; exit 0; }
exit 7
STUB
chmod +x "$scratch/bin/curl"

# run NAME ENTRY [VAR=VALUE...]: runs ENTRY (scripts/test or .ci/run) of the
# copy from an unrelated directory; sets $rc, $out (stdout+stderr), $calls.
run() {
  local name="$1" entry="$2"
  shift 2
  : >"$log"
  out="$(cd "$scratch" && env -u CI -u SANDRUN_REQUIRE_DOCKER -u SANDRUN_BUILD_DIR \
           PATH="$scratch/bin:$PATH" DOCKER_HOST="unix://$scratch/no-engine.sock" "$@" \
           bash "$tree/$entry" 2>&1)"
  rc=$?
  calls="$(cat "$log")"
  echo "== $name: exit $rc"
  echo "$calls" | sed 's/^/   /'
}
# The line number of the first call matching $1 (0 if none).
line_of() { grep -nF -- "$1" <<<"$calls" | head -n1 | cut -d: -f1 || true; }

run "engine started by the run" scripts/test
[ "$rc" = 0 ] || fail "started: exit $rc, not 0: $out"
has "$calls" "ctest -j2 --output-on-failure --timeout 600 | cwd=$tree/build" ||
  fail "started: ctest did not run in $tree/build"
stop="$(line_of "docker-test-env --stop")"
ctest_line="$(line_of "ctest ")"
[ -n "$stop" ] && [ "$stop" -gt 0 ] || fail "started: the engine this run started was not stopped: $out"
[ -n "$stop" ] && [ -n "$ctest_line" ] && [ "$stop" -gt "$ctest_line" ] ||
  fail "started: the stop did not come after ctest"
has "$out" "No such file" && fail "started: a path was not found: $out"

run "ctest fails" scripts/test FAKE_CTEST_RC=8
[ "$rc" = 8 ] || fail "ctest fails: exit $rc, not ctest's 8"
has "$calls" "docker-test-env --stop" || fail "ctest fails: the engine was not stopped"

run "engine already up" scripts/test FAKE_ENGINE_UP=1
[ "$rc" = 0 ] || fail "already up: exit $rc"
has "$calls" "docker-test-env --stop" && fail "already up: stopped an engine it did not start"
has "$calls" "ctest " || fail "already up: ctest did not run"

run "no engine, not required" scripts/test FAKE_START_RC=1
[ "$rc" = 0 ] || fail "not required: exit $rc, not 0"
has "$out" "Docker tests will skip with the reason" || fail "not required: no skip notice: $out"
has "$calls" "ctest -j2 --output-on-failure --timeout 600 | cwd=$tree/build | require=unset" ||
  fail "not required: ctest did not run, or ran with SANDRUN_REQUIRE_DOCKER set"
has "$calls" "docker-test-env --stop" || fail "not required: a half-started engine was not stopped"

for setting in CI=true SANDRUN_REQUIRE_DOCKER=1; do
  run "no engine, $setting" scripts/test FAKE_START_RC=1 "$setting"
  [ "$rc" != 0 ] || fail "$setting: a missing engine passed"
  has "$out" "Docker is required here" || fail "$setting: no reason given: $out"
  has "$calls" "ctest " && fail "$setting: ctest ran without an engine"
  has "$calls" "docker-test-env --stop" || fail "$setting: a half-started engine was not stopped"
done

run "no engine, CI=true, SANDRUN_REQUIRE_DOCKER=0" scripts/test FAKE_START_RC=1 CI=true \
  SANDRUN_REQUIRE_DOCKER=0
[ "$rc" = 0 ] || fail "explicit opt-out: exit $rc, not 0"

run "engine up, CI=true" scripts/test CI=true
[ "$rc" = 0 ] || fail "CI with engine: exit $rc"
has "$calls" "ctest -j2 --output-on-failure --timeout 600 | cwd=$tree/build | require=1" ||
  fail "CI with engine: the tests were not told that Docker is required"

run ".ci/run, no engine" .ci/run FAKE_START_RC=1
[ "$rc" != 0 ] || fail ".ci/run: a missing engine passed"
has "$out" "Docker is required here" || fail ".ci/run: no reason given: $out"
has "$calls" "ctest " && fail ".ci/run: ctest ran without an engine"

run ".ci/run, engine started" .ci/run
[ "$rc" = 0 ] || fail ".ci/run with engine: exit $rc"
has "$calls" "ctest -j2 --output-on-failure --timeout 600 | cwd=$tree/build | require=1" ||
  fail ".ci/run with engine: the tests were not told that Docker is required"
has "$calls" "docker-test-env --stop" || fail ".ci/run with engine: the engine was not stopped"
has "$calls" "ctest -j2 --output-on-failure --timeout 600 | cwd=$tree/build-static | require=1" ||
  fail ".ci/run with engine: the whole suite did not run in build-static (static plugins)"

finish
