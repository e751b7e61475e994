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
# typed suites carry "  # TypeParam = T", value-parameterised cases
# "  # GetParam() = V". Tests are named as CMake's gtest_discover_tests names
# them (GoogleTestAddTests.cmake, CMake 3.25): TypedT.ZeroIsFalsy<int>,
# Nums/ParamT.IsSmall/42, DISABLED_ dropped from the name. Brackets and
# semicolons would break CMake's list splitting: they travel as placeholders
# until the names are built.

# A placeholder for `char` that the listing does not contain, put in its place.
function(_sandrun_hide out char name)
  set(placeholder "@sandrun_${name}@")
  while(listing MATCHES "${placeholder}")
    string(APPEND placeholder "_")
  endwhile()
  string(REPLACE "${char}" "${placeholder}" listing "${listing}")
  set(listing "${listing}" PARENT_SCOPE)
  set(${out} "${placeholder}" PARENT_SCOPE)
endfunction()
_sandrun_hide(open "[" open)
_sandrun_hide(close "]" close)
_sandrun_hide(semicolon ";" semicolon)
function(_sandrun_restore out text)
  string(REPLACE "${open}" "[" text "${text}")
  string(REPLACE "${close}" "]" text "${text}")
  string(REPLACE "${semicolon}" ";" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

string(REPLACE "\n" ";" lines "${listing}")
set(code "# Written by SandrunDiscoverTests.cmake for ${SANDRUN_TARGET}; do not edit.\n")
set(list_code "")
set(suite "")
foreach(line IN LISTS lines)
  if(line MATCHES "^[ \t]*$")
    continue()
  endif()
  if(NOT line MATCHES "^ ")
    if(NOT line MATCHES "^([^ ]+)\\.( +#.*)?$")
      set(suite "")
      continue()  # a banner some main() prints, not a suite
    endif()
    set(suite "${CMAKE_MATCH_1}")
    set(type_parameter "")
    if(line MATCHES "#")
      # Typed: the name is the suite up to its first '/', then <type>.
      string(REGEX REPLACE "/.*" "" pretty_suite "${line}")
      if(SANDRUN_NO_PRETTY_TYPES)
        string(REGEX REPLACE ".*/([0-9]+)[ .#]+TypeParam = .*" "\\1" type_parameter "${line}")
      else()
        string(REGEX REPLACE ".*/[0-9]+[ .#]+TypeParam = (.*)" "\\1" type_parameter "${line}")
      endif()
      set(type_parameter "<${type_parameter}>")
    else()
      set(pretty_suite "${suite}")
    endif()
    string(REGEX REPLACE "^DISABLED_" "" pretty_suite "${pretty_suite}")
    continue()
  endif()
  if(suite STREQUAL "")
    continue()
  endif()
  string(STRIP "${line}" case)
  if(case MATCHES "#" AND NOT SANDRUN_NO_PRETTY_VALUES)
    string(REGEX REPLACE "/[0-9]+[ #]+GetParam\\(\\) = " "/" pretty_case "${case}")
  else()
    string(REGEX REPLACE " +#.*" "" pretty_case "${case}")
  endif()
  string(REGEX REPLACE "^DISABLED_" "" pretty_case "${pretty_case}")
  string(REGEX REPLACE " +#.*" "" case "${case}")
  _sandrun_restore(name "${SANDRUN_TEST_PREFIX}${pretty_suite}.${pretty_case}${type_parameter}${SANDRUN_TEST_SUFFIX}")
  _sandrun_restore(full "${suite}.${case}")
  _sandrun_quote(name_code "${name}")
  _sandrun_quote(filter_code "--gtest_filter=${full}")
  # XML_OUTPUT_DIR: GoogleTest writes its report in the sandbox, and sandrun
  # copies it to where gtest_discover_tests would have it written (relative
  # to the test's working directory, as there).
  set(xml_code "")
  if(NOT SANDRUN_XML_OUTPUT_DIR STREQUAL "")
    _sandrun_restore(xml_file "${SANDRUN_XML_OUTPUT_DIR}/${SANDRUN_TEST_PREFIX}${suite}.${case}${SANDRUN_TEST_SUFFIX}.xml")
    _sandrun_quote(q "sandrun-gtest-output.xml:${xml_file}")
    set(xml_code " --download-to ${q}")
    set(xml_param " --gtest_output=xml:sandrun-gtest-output.xml")
  else()
    set(xml_param "")
  endif()
  string(APPEND code
    "add_test(${name_code}${launcher_code} --name ${name_code}${xml_code} --"
    " ${binary_code} ${filter_code} --gtest_also_run_disabled_tests${xml_param}${extra_code})\n")
  if(suite MATCHES "^DISABLED_" OR case MATCHES "^DISABLED_")
    string(APPEND code "set_tests_properties(${name_code} PROPERTIES DISABLED TRUE)\n")
  endif()
  _sandrun_quote(wd_code "${SANDRUN_TEST_WORKING_DIRECTORY}")
  string(APPEND code "set_tests_properties(${name_code} PROPERTIES WORKING_DIRECTORY ${wd_code}"
                     " SKIP_REGULAR_EXPRESSION [==[\\[  SKIPPED \\]]==]${properties_code})\n")
  # As CMake does: names with brackets stay out of the list, ';' is escaped.
  if(NOT name MATCHES "[][]")
    string(REPLACE ";" "\\;" name "${name}")
    _sandrun_quote(q "${name}")
    string(APPEND list_code " ${q}")
  endif()
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
else()
  # Newer than the binary now: DISCOVERY_MODE PRE_TEST lists it only again
  # after the next build.
  file(TOUCH_NOCREATE "${SANDRUN_TESTS_FILE}")
endif()
