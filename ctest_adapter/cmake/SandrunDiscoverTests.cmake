# Build-time half of sandrun_discover_tests() (SandrunCTest.cmake), run as
#   cmake -D SANDRUN_DISCOVERY_ARGS=<file> -P SandrunDiscoverTests.cmake
# after every build of the GoogleTest binary. It lists the cases on the host
# (`--gtest_list_tests`, never in a sandbox) and writes the CTest file that
# declares one test per case, each running that case through `sandrun exec`.
cmake_minimum_required(VERSION 3.25)

if(NOT SANDRUN_DISCOVERY_ARGS OR NOT EXISTS "${SANDRUN_DISCOVERY_ARGS}")
  message(FATAL_ERROR "SandrunDiscoverTests: SANDRUN_DISCOVERY_ARGS names no file")
endif()
include("${SANDRUN_DISCOVERY_ARGS}")

set(list_args --gtest_list_tests)
if(NOT SANDRUN_TEST_FILTER STREQUAL "")
  list(APPEND list_args "--gtest_filter=${SANDRUN_TEST_FILTER}")
endif()
execute_process(
  COMMAND "${SANDRUN_BINARY}" ${list_args}
  WORKING_DIRECTORY "${SANDRUN_WORKING_DIRECTORY}"
  TIMEOUT ${SANDRUN_DISCOVERY_TIMEOUT}
  OUTPUT_VARIABLE listing
  ERROR_VARIABLE listing_err
  RESULT_VARIABLE rc)
if(NOT rc STREQUAL "0")
  file(REMOVE "${SANDRUN_TESTS_FILE}")
  message(FATAL_ERROR
    "sandrun_discover_tests(${SANDRUN_TARGET}): '${SANDRUN_BINARY} ${list_args}' "
    "failed (${rc}) within ${SANDRUN_DISCOVERY_TIMEOUT} s:\n${listing}${listing_err}")
endif()

# Bracket-quotes `text` for CMake code, with a bracket longer than any "]=*]"
# inside it.
function(_sandrun_quote out text)
  set(eq "=")
  while(text MATCHES "]${eq}]")
    string(APPEND eq "=")
  endwhile()
  set(${out} "[${eq}[${text}]${eq}]" PARENT_SCOPE)
endfunction()

set(launcher_code "")
foreach(arg IN LISTS SANDRUN_LAUNCHER)
  _sandrun_quote(q "${arg}")
  string(APPEND launcher_code " ${q}")
endforeach()
set(extra_code "")
foreach(arg IN LISTS SANDRUN_EXTRA_ARGS)
  _sandrun_quote(q "${arg}")
  string(APPEND extra_code " ${q}")
endforeach()
set(properties_code "")
foreach(arg IN LISTS SANDRUN_PROPERTIES)
  _sandrun_quote(q "${arg}")
  string(APPEND properties_code " ${q}")
endforeach()
_sandrun_quote(binary_code "${SANDRUN_BINARY}")

# --gtest_list_tests prints "Suite." lines, each followed by "  Case" lines;
# typed and value-parameterised ones carry a "  # TypeParam = ..." comment.
# Comments go first: their brackets would hold CMake's list splitting.
string(REGEX REPLACE "[ \t]+#[^\n]*" "" listing "${listing}")
string(REPLACE ";" "" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
set(code "# Written by SandrunDiscoverTests.cmake for ${SANDRUN_TARGET}; do not edit.\n")
set(names)
set(suite "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[ \t]*$")
    continue()
  endif()
  if(NOT line MATCHES "^ ")
    if(NOT line MATCHES "\\.$")
      continue()  # a banner some main() prints, not a suite
    endif()
    string(REGEX REPLACE "\\.$" "" suite "${line}")
    continue()
  endif()
  string(STRIP "${line}" case)
  if(suite STREQUAL "")
    continue()
  endif()
  set(full "${suite}.${case}")
  set(name "${SANDRUN_TEST_PREFIX}${full}${SANDRUN_TEST_SUFFIX}")
  list(APPEND names "${name}")
  _sandrun_quote(name_code "${name}")
  _sandrun_quote(filter_code "--gtest_filter=${full}")
  set(disabled_code "")
  if(full MATCHES "(^|\\.|/)DISABLED_")
    set(disabled_code " [==[--gtest_also_run_disabled_tests]==]")
  endif()
  string(APPEND code
    "add_test(${name_code}${launcher_code} --name ${name_code} --"
    " ${binary_code} ${filter_code}${disabled_code}${extra_code})\n"
    "set_tests_properties(${name_code} PROPERTIES${properties_code})\n")
  if(disabled_code)
    string(APPEND code "set_tests_properties(${name_code} PROPERTIES DISABLED TRUE)\n")
  endif()
endforeach()

set(list_code "")
foreach(name IN LISTS names)
  _sandrun_quote(q "${name}")
  string(APPEND list_code " ${q}")
endforeach()
string(APPEND code "set(${SANDRUN_TEST_LIST}${list_code})\n")

# Rewrite only on change, so ctest never reads a half-written file.
set(old "")
if(EXISTS "${SANDRUN_TESTS_FILE}")
  file(READ "${SANDRUN_TESTS_FILE}" old)
endif()
if(NOT old STREQUAL code)
  file(WRITE "${SANDRUN_TESTS_FILE}.tmp" "${code}")
  file(RENAME "${SANDRUN_TESTS_FILE}.tmp" "${SANDRUN_TESTS_FILE}")
endif()
