# SandrunCTest: CTest tests that run in sandrun sandboxes (docs/ctest.md).
#
#   sandrun_add_test(NAME name COMMAND cmd [args...] [sandbox options])
#       One CTest test running `cmd` through `sandrun exec`. An executable
#       target named as cmd goes up as a portable executable.
#   sandrun_discover_tests(target [gtest_discover_tests options] [sandbox options])
#       Each GoogleTest case of `target` (listed on the host after every
#       build, or when ctest runs) becomes a CTest test running that one case
#       in a sandbox, named and set up as gtest_discover_tests does.
#   sandrun_sandbox_directory_tests([TARGETS t...] [EXCLUDE_TESTS n...] [sandbox options])
#       Every add_test() of the calling directory whose command is an
#       executable target runs through sandrun, unchanged in the source.
#
# Sandbox options, each optional (unset: sandrun's config decides, from the
# SANDRUN_* environment of `ctest`, sandrun.json, or defaults):
#   BACKEND b         default backend of these tests; SANDRUN_BACKEND set
#                     when ctest runs overrides it
#   IMAGE i | DOCKERFILE path
#   TIMEOUT seconds   the command's time (sandrun's --timeout); CTest's
#                     TIMEOUT is raised by TIMEOUT_MARGIN for sandbox setup
#   TIMEOUT_MARGIN seconds   (default TIMEOUT/4, 30..120 s)
#   CPU n  MEMORY mib  GPU spec  NETWORK none|open
#   ENV K=V...        environment inside the sandbox
#   UPLOAD src[:dst]... files or directories copied in (relative src: to the
#                     current source directory)
#   LABELS l...       CTest labels
#   WORKING_DIRECTORY dir   where ctest starts sandrun on the host
#
# The sandrun executable is the target Sandrun::sandrun (find_package(Sandrun)
# or add_subdirectory of sandrun's tree), else SANDRUN_EXECUTABLE.
#
# SANDRUN_REPORT (a variable, e.g. -DSANDRUN_REPORT=report.html; relative to
# the top build directory): after the sandrun tests of each ctest invocation,
# the test `sandrun.report` (a CTest fixture cleanup) writes the invocation's
# run as one HTML page there (docs/report.md).
#
# SANDRUN_SERVICE (a variable, default ON): the tests of one ctest invocation
# run through one `sandrun service`, started by the test `sandrun.service.start`
# (fixture setup) and ended by `sandrun.service.stop` (cleanup), which keeps
# warm sandboxes for them: discovered GoogleTest cases share them (isolation
# process, as `sandrun gtest`); sandrun_add_test and directory tests keep a
# sandbox each (isolation sandbox) unless SANDRUN_ISOLATION says otherwise.
# OFF: every test is a sandrun of its own, as before (docs/ctest.md).

include_guard(GLOBAL)

if(NOT DEFINED SANDRUN_SERVICE)
  set(SANDRUN_SERVICE ON)
endif()

# The sandbox keywords, one-value and multi-value, for cmake_parse_arguments.
macro(_sandrun_sandbox_keywords)
  set(_SANDRUN_SANDBOX_ONE BACKEND IMAGE DOCKERFILE TIMEOUT TIMEOUT_MARGIN CPU MEMORY GPU NETWORK
      WORKING_DIRECTORY)
  set(_SANDRUN_SANDBOX_MULTI ENV UPLOAD LABELS)
endmacro()
# Where the discovery script lives, read by functions called from anywhere.
set_property(GLOBAL PROPERTY _SANDRUN_CTEST_MODULE_DIR "${CMAKE_CURRENT_LIST_DIR}")

# The sandrun executable: a generator expression when `genex` is TRUE,
# otherwise a plain path (for properties that do not evaluate them).
function(_sandrun_executable out genex)
  if(TARGET Sandrun::sandrun)
    if(genex)
      set(${out} "$<TARGET_FILE:Sandrun::sandrun>" PARENT_SCOPE)
      return()
    endif()
    get_target_property(aliased Sandrun::sandrun ALIASED_TARGET)
    if(aliased)
      # sandrun's own tree: where the build puts the binary.
      get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
      if(multi_config)
        message(WARNING "SandrunCTest: with a multi-config generator and CMake < 3.29 the "
                        "directory wrapper cannot name the in-tree sandrun of each "
                        "configuration; install sandrun and use find_package(Sandrun)")
      endif()
      get_target_property(dir ${aliased} RUNTIME_OUTPUT_DIRECTORY)
      if(NOT dir)
        get_target_property(dir ${aliased} BINARY_DIR)
      endif()
      get_target_property(name ${aliased} OUTPUT_NAME)
      if(NOT name)
        set(name ${aliased})
      endif()
      set(${out} "${dir}/${name}${CMAKE_EXECUTABLE_SUFFIX}" PARENT_SCOPE)
      return()
    endif()
    foreach(property IMPORTED_LOCATION_${CMAKE_BUILD_TYPE} IMPORTED_LOCATION_RELEASE
                     IMPORTED_LOCATION_RELWITHDEBINFO IMPORTED_LOCATION_DEBUG IMPORTED_LOCATION)
      string(TOUPPER "${property}" property)
      get_target_property(location Sandrun::sandrun ${property})
      if(location)
        set(${out} "${location}" PARENT_SCOPE)
        return()
      endif()
    endforeach()
  endif()
  if(SANDRUN_EXECUTABLE)
    set(${out} "${SANDRUN_EXECUTABLE}" PARENT_SCOPE)
    return()
  endif()
  message(FATAL_ERROR "SandrunCTest: no sandrun executable: use find_package(Sandrun), "
                      "add_subdirectory(<sandrun source>), or set SANDRUN_EXECUTABLE")
endfunction()

# In `out`: the command `exe subcommand...` with `--backend` defaulting to
# `backend` (empty: sandrun's config decides); SANDRUN_BACKEND at ctest time
# wins, as for the tests.
function(_sandrun_backend_command out exe backend)
  if(NOT backend STREQUAL "")
    list(JOIN ARGN " " subcommand)
    set(${out} sh -c
        "exec \"\$0\" ${subcommand} --backend \"\${SANDRUN_BACKEND:-${backend}}\" \"\$@\"" "${exe}"
        PARENT_SCOPE)
  else()
    set(${out} "${exe}" ${ARGN} PARENT_SCOPE)
  endif()
endfunction()

# With SANDRUN_REPORT set: the one test `sandrun.report` that writes the
# HTML report of the ctest invocation's run once the tests that need the
# fixture `sandrun_report` are done (it runs only when one of them runs).
# `backend` is the default backend of the first function that asked (empty:
# sandrun's config decides), SANDRUN_BACKEND at ctest time wins as for the tests.
function(_sandrun_report_test exe backend)
  get_property(added GLOBAL PROPERTY _SANDRUN_REPORT_TEST)
  if(added)
    return()
  endif()
  set_property(GLOBAL PROPERTY _SANDRUN_REPORT_TEST TRUE)
  get_filename_component(file "${SANDRUN_REPORT}" ABSOLUTE BASE_DIR "${CMAKE_BINARY_DIR}")
  _sandrun_backend_command(command "${exe}" "${backend}" results report)
  add_test(NAME sandrun.report COMMAND ${command} --run-group-of-parent -o "${file}")
  # Last: after the service (when there is one) has ended.
  set_tests_properties(sandrun.report PROPERTIES FIXTURES_CLEANUP "sandrun_report;sandrun_service"
                                                 DEPENDS sandrun.service.stop)
endfunction()

# With SANDRUN_SERVICE on: the tests `sandrun.service.start` and
# `sandrun.service.stop`, a CTest fixture `sandrun_service` around every
# sandrun test of the invocation, and in `out` the socket they share (in the
# build tree, or in /tmp when that path is too long for a unix socket).
# `backend` as for _sandrun_report_test.
function(_sandrun_service_tests out exe backend)
  set(socket "${CMAKE_BINARY_DIR}/.sandrun-service.sock")
  string(LENGTH "${socket}" length)
  if(length GREATER 100)
    string(SHA1 hash "${CMAKE_BINARY_DIR}")
    string(SUBSTRING "${hash}" 0 16 hash)
    set(socket "/tmp/sandrun-service-${hash}.sock")
  endif()
  set(${out} "${socket}" PARENT_SCOPE)
  get_property(added GLOBAL PROPERTY _SANDRUN_SERVICE_TESTS)
  if(added)
    return()
  endif()
  set_property(GLOBAL PROPERTY _SANDRUN_SERVICE_TESTS TRUE)
  _sandrun_backend_command(start "${exe}" "${backend}" service start)
  # --optional: a service that cannot start leaves each test to run its own
  # sandbox, rather than CTest not running them at all.
  add_test(NAME sandrun.service.start COMMAND ${start} --optional --socket "${socket}")
  add_test(NAME sandrun.service.stop COMMAND "${exe}" service stop --leave --socket "${socket}")
  set_tests_properties(sandrun.service.start PROPERTIES FIXTURES_SETUP sandrun_service)
  set_tests_properties(sandrun.service.stop PROPERTIES FIXTURES_CLEANUP sandrun_service)
endfunction()

# Checks the sandbox options parsed with prefix `p` in the caller and sets
#   _sandrun_launcher  the command prefix up to (not including) `--`
#   _sandrun_properties  CTest properties (TIMEOUT, LABELS, WORKING_DIRECTORY)
# `fn` names the calling function in error messages. The launcher always
# passes --exit-like-command (a crash in the sandbox ends sandrun by the same
# signal, so CTest reports it as it reports a local crash) and
# --run-group-of-parent (the tests of one ctest invocation are one run).
macro(_sandrun_sandbox_arguments fn p genex)
  _sandrun_executable(_sandrun_exe ${genex})
  set(_sandrun_launcher)
  set(_sandrun_properties)
  if(DEFINED ${p}_BACKEND)
    if(NOT ${p}_BACKEND MATCHES "^[A-Za-z0-9_.-]+$")
      message(FATAL_ERROR "${fn}: BACKEND '${${p}_BACKEND}' is not a backend name "
                          "(local, docker, modal, auto, or a plugin's name)")
    endif()
    # A default, not a pin: SANDRUN_BACKEND in ctest's environment wins, so
    # one variable switches a whole pipeline (docs/ctest.md).
    list(APPEND _sandrun_launcher sh -c
         "exec \"\$0\" exec --backend \"\${SANDRUN_BACKEND:-${${p}_BACKEND}}\" \"\$@\""
         "${_sandrun_exe}")
  else()
    list(APPEND _sandrun_launcher "${_sandrun_exe}" exec)
  endif()
  list(APPEND _sandrun_launcher --exit-like-command --run-group-of-parent)
  # One fixture for the tests to require (a property takes one list, which
  # the discovery script cannot pass on): sandrun_service, whose cleanups
  # include the report; else sandrun_report.
  set(_sandrun_fixture)
  if(SANDRUN_SERVICE)
    _sandrun_executable(_sandrun_service_exe TRUE)
    _sandrun_service_tests(_sandrun_socket "${_sandrun_service_exe}" "${${p}_BACKEND}")
    list(APPEND _sandrun_launcher --service "${_sandrun_socket}")
    set(_sandrun_fixture sandrun_service)
  endif()
  if(NOT "${SANDRUN_REPORT}" STREQUAL "")
    _sandrun_executable(_sandrun_report_exe TRUE)
    _sandrun_report_test("${_sandrun_report_exe}" "${${p}_BACKEND}")
    if(NOT _sandrun_fixture)
      set(_sandrun_fixture sandrun_report)
    endif()
  endif()
  if(_sandrun_fixture)
    list(APPEND _sandrun_properties FIXTURES_REQUIRED ${_sandrun_fixture})
  endif()
  if(DEFINED ${p}_IMAGE AND DEFINED ${p}_DOCKERFILE)
    message(FATAL_ERROR "${fn}: give IMAGE or DOCKERFILE, not both")
  endif()
  # Free-form values (CMake >= 3.31 keeps an explicit "" as a value).
  foreach(_sandrun_key IMAGE GPU)
    if(DEFINED ${p}_${_sandrun_key})
      if("${${p}_${_sandrun_key}}" STREQUAL "")
        message(FATAL_ERROR "${fn}: ${_sandrun_key} needs a value")
      endif()
      string(TOLOWER "${_sandrun_key}" _sandrun_flag)
      list(APPEND _sandrun_launcher --${_sandrun_flag} "${${p}_${_sandrun_key}}")
    endif()
  endforeach()
  if(DEFINED ${p}_DOCKERFILE)
    get_filename_component(_sandrun_path "${${p}_DOCKERFILE}" ABSOLUTE
                           BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT EXISTS "${_sandrun_path}" OR IS_DIRECTORY "${_sandrun_path}")
      message(FATAL_ERROR "${fn}: DOCKERFILE '${${p}_DOCKERFILE}' is not a file")
    endif()
    list(APPEND _sandrun_launcher --dockerfile "${_sandrun_path}")
  endif()
  foreach(_sandrun_key CPU MEMORY)
    if(DEFINED ${p}_${_sandrun_key})
      if(NOT ${p}_${_sandrun_key} MATCHES "^[0-9]+(\\.[0-9]+)?$" OR ${p}_${_sandrun_key} EQUAL 0)
        message(FATAL_ERROR "${fn}: ${_sandrun_key} must be a positive number, "
                            "got '${${p}_${_sandrun_key}}'")
      endif()
      string(TOLOWER "${_sandrun_key}" _sandrun_flag)
      list(APPEND _sandrun_launcher --${_sandrun_flag} "${${p}_${_sandrun_key}}")
    endif()
  endforeach()
  if(DEFINED ${p}_NETWORK)
    if(NOT ${p}_NETWORK MATCHES "^(none|open)$")
      message(FATAL_ERROR "${fn}: NETWORK must be none or open, got '${${p}_NETWORK}'")
    endif()
    list(APPEND _sandrun_launcher --network "${${p}_NETWORK}")
  endif()
  foreach(_sandrun_kv IN LISTS ${p}_ENV)
    if(NOT _sandrun_kv MATCHES "^[^=]+=")
      message(FATAL_ERROR "${fn}: ENV expects K=V, got '${_sandrun_kv}'")
    endif()
    # (Escaped: a value holding ';' stays one argument.)
    string(REPLACE ";" "\\;" _sandrun_kv "${_sandrun_kv}")
    list(APPEND _sandrun_launcher -e "${_sandrun_kv}")
  endforeach()
  foreach(_sandrun_upload IN LISTS ${p}_UPLOAD)
    string(FIND "${_sandrun_upload}" ":" _sandrun_colon)
    set(_sandrun_destination)
    set(_sandrun_source "${_sandrun_upload}")
    if(_sandrun_colon GREATER 0)
      string(SUBSTRING "${_sandrun_upload}" 0 ${_sandrun_colon} _sandrun_source)
      math(EXPR _sandrun_colon "${_sandrun_colon} + 1")
      string(SUBSTRING "${_sandrun_upload}" ${_sandrun_colon} -1 _sandrun_destination)
      set(_sandrun_destination ":${_sandrun_destination}")
    endif()
    if(_sandrun_source STREQUAL "")
      message(FATAL_ERROR "${fn}: UPLOAD entry '${_sandrun_upload}' names no file")
    endif()
    get_filename_component(_sandrun_path "${_sandrun_source}" ABSOLUTE
                           BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    string(REPLACE ";" "\\;" _sandrun_upload "${_sandrun_path}${_sandrun_destination}")
    list(APPEND _sandrun_launcher --upload "${_sandrun_upload}")
  endforeach()
  if(DEFINED ${p}_TIMEOUT_MARGIN AND NOT DEFINED ${p}_TIMEOUT)
    message(FATAL_ERROR "${fn}: TIMEOUT_MARGIN needs TIMEOUT")
  endif()
  if(DEFINED ${p}_TIMEOUT)
    _sandrun_ctest_timeout(_sandrun_ctest_timeout "${fn}" "${${p}_TIMEOUT}" "${${p}_TIMEOUT_MARGIN}")
    # The sandbox ends by itself about when CTest would give up on it
    # (sandrun raises the lifetime to cover its deadline plus a minute).
    list(APPEND _sandrun_launcher --timeout ${${p}_TIMEOUT} --lifetime ${_sandrun_ctest_timeout})
    list(APPEND _sandrun_properties TIMEOUT ${_sandrun_ctest_timeout})
  endif()
  if(DEFINED ${p}_LABELS)
    list(APPEND _sandrun_properties LABELS "${${p}_LABELS}")
  endif()
  if(DEFINED ${p}_WORKING_DIRECTORY)
    get_filename_component(_sandrun_path "${${p}_WORKING_DIRECTORY}" ABSOLUTE
                           BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
    list(APPEND _sandrun_properties WORKING_DIRECTORY "${_sandrun_path}")
  endif()
endmacro()

# CTest's TIMEOUT for a command given `timeout` seconds: `timeout` plus
# `margin` (default timeout/4, at least 30 s, at most 120 s) for creating,
# uploading to and removing the sandbox, so sandrun reports the timeout and
# cleans up before CTest would kill it (a busy 2-core Docker engine has taken
# over 5 s to start a container; a cloud sandbox can take tens of seconds). A fractional timeout counts as the
# next whole second here.
function(_sandrun_ctest_timeout out fn timeout margin)
  if(NOT timeout MATCHES "^[0-9]+(\\.[0-9]+)?$" OR timeout EQUAL 0)
    message(FATAL_ERROR "${fn}: TIMEOUT must be a positive number of seconds, got '${timeout}'")
  endif()
  string(REGEX REPLACE "\\..*" "" whole "${timeout}")
  if(NOT whole STREQUAL timeout)
    math(EXPR whole "${whole} + 1")
  endif()
  if(margin STREQUAL "")
    math(EXPR margin "${whole} / 4")
    if(margin LESS 30)
      set(margin 30)
    elseif(margin GREATER 120)
      set(margin 120)
    endif()
  elseif(NOT margin MATCHES "^[0-9]+$")
    message(FATAL_ERROR "${fn}: TIMEOUT_MARGIN must be whole seconds, got '${margin}'")
  endif()
  math(EXPR ctest_timeout "${whole} + ${margin}")
  set(${out} ${ctest_timeout} PARENT_SCOPE)
endfunction()

# Arguments that no keyword claimed are mistakes; name the first one.
macro(_sandrun_no_stray fn p)
  if(DEFINED ${p}_UNPARSED_ARGUMENTS)
    list(GET ${p}_UNPARSED_ARGUMENTS 0 _sandrun_stray)
    message(FATAL_ERROR "${fn}: unknown argument '${_sandrun_stray}'")
  endif()
  if(DEFINED ${p}_KEYWORDS_MISSING_VALUES)
    string(REPLACE ";" ", " _sandrun_missing "${${p}_KEYWORDS_MISSING_VALUES}")
    message(FATAL_ERROR "${fn}: ${_sandrun_missing} given without a value")
  endif()
endmacro()

function(sandrun_add_test)
  _sandrun_sandbox_keywords()
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "NAME;${_SANDRUN_SANDBOX_ONE}"
                        "COMMAND;${_SANDRUN_SANDBOX_MULTI}")
  set(fn sandrun_add_test)
  _sandrun_no_stray(${fn} ARG)
  if(NOT DEFINED ARG_NAME)
    message(FATAL_ERROR "${fn}: NAME is required")
  endif()
  if(NOT DEFINED ARG_COMMAND)
    message(FATAL_ERROR "${fn}(${ARG_NAME}): COMMAND is required")
  endif()
  _sandrun_sandbox_arguments("${fn}(${ARG_NAME})" ARG TRUE)

  # The command's arguments one by one from ARGV<n>, as add_test gets them:
  # as a list, "[" ... "]" would run together (CMake's list syntax), and a
  # list() edit would undo the escaping that keeps `sh -c "a; b"` whole.
  set(keywords NAME ${_SANDRUN_SANDBOX_ONE} ${_SANDRUN_SANDBOX_MULTI})
  set(in_command FALSE)
  set(command_count 0)
  math(EXPR last "${ARGC} - 1")
  foreach(i RANGE 0 ${last})
    set(argument "${ARGV${i}}")
    if(in_command AND argument IN_LIST keywords)
      set(in_command FALSE)
    endif()
    if(in_command)
      set(command_${command_count} "${argument}")
      math(EXPR command_count "${command_count} + 1")
    elseif(argument STREQUAL "COMMAND")
      set(in_command TRUE)
    endif()
  endforeach()
  set(program "${command_0}")
  if(TARGET "${program}")
    get_target_property(type "${program}" TYPE)
    if(NOT type STREQUAL "EXECUTABLE")
      message(FATAL_ERROR "${fn}(${ARG_NAME}): COMMAND target '${program}' is a ${type}, "
                          "not an executable")
    endif()
    # Built on this host: it goes up with its shared libraries and loader.
    set(program "$<TARGET_FILE:${program}>")
    list(APPEND _sandrun_launcher --upload-command)
  elseif(program MATCHES "^\\$<TARGET_FILE:")
    list(APPEND _sandrun_launcher --upload-command)
  endif()
  # add_test with every argument bracket-quoted, as add_test's own caller
  # would write it: one holding ';' or nothing at all reaches the command
  # as given.
  set(call "add_test(NAME")
  _sandrun_append_bracketed(call "${fn}(${ARG_NAME})" "${ARG_NAME}")
  string(APPEND call " COMMAND")
  foreach(argument IN LISTS _sandrun_launcher)
    _sandrun_append_bracketed(call "${fn}(${ARG_NAME})" "${argument}")
  endforeach()
  string(APPEND call " --name")
  _sandrun_append_bracketed(call "${fn}(${ARG_NAME})" "${ARG_NAME}")
  string(APPEND call " --")
  _sandrun_append_bracketed(call "${fn}(${ARG_NAME})" "${program}")
  if(command_count GREATER 1)
    math(EXPR last "${command_count} - 1")
    foreach(i RANGE 1 ${last})
      _sandrun_append_bracketed(call "${fn}(${ARG_NAME})" "${command_${i}}")
    endforeach()
  endif()
  cmake_language(EVAL CODE "${call})")
  if(_sandrun_properties)
    set_tests_properties("${ARG_NAME}" PROPERTIES ${_sandrun_properties})
  endif()
endfunction()

# Appends ` [==[text]==]` to the variable named `code`: `text` as one
# argument of generated CMake code, whatever it holds.
function(_sandrun_append_bracketed code who text)
  if(text MATCHES "]==]")
    message(FATAL_ERROR "${who}: an argument contains ']==]', which sandrun cannot pass on")
  endif()
  set(${code} "${${code}} [==[${text}]==]" PARENT_SCOPE)
endfunction()

# Writes `list` as CMake code appending each element to `var`, bracket-quoted
# so any text survives (the discovery script reads it back).
function(_sandrun_list_code out var)
  set(code "set(${var})\n")
  foreach(item IN LISTS ARGN)
    string(APPEND code "list(APPEND ${var} [==[${item}]==])\n")
  endforeach()
  set(${out} "${code}" PARENT_SCOPE)
endfunction()

# gtest_discover_tests' options (CMake's GoogleTest module), the same names
# and meanings, so switching is a change of the function's name.
function(sandrun_discover_tests target)
  _sandrun_sandbox_keywords()
  set(options NO_PRETTY_TYPES NO_PRETTY_VALUES)
  set(one TEST_PREFIX TEST_SUFFIX TEST_FILTER TEST_LIST DISCOVERY_TIMEOUT DISCOVERY_MODE
      XML_OUTPUT_DIR ${_SANDRUN_SANDBOX_ONE})
  set(multi EXTRA_ARGS ${_SANDRUN_SANDBOX_MULTI})
  set(fn "sandrun_discover_tests(${target})")
  # PROPERTIES name/value pairs first, as gtest_discover_tests reads them:
  # `PROPERTIES LABELS unit TIMEOUT 30` names CTest properties even where a
  # name is one of our keywords too. They end at a keyword that is not a
  # test property. TIMEOUT among them is the command's time (as the keyword).
  set(properties)
  set(rest)
  set(in_properties FALSE)
  set(property_name "")
  math(EXPR last "${ARGC} - 1")
  set(indices)
  if(last GREATER_EQUAL 1)
    foreach(i RANGE 1 ${last})
      list(APPEND indices ${i})
    endforeach()
  endif()
  foreach(i IN LISTS indices)
    set(arg "${ARGV${i}}")
    if(arg STREQUAL "PROPERTIES")
      set(in_properties TRUE)
      continue()
    endif()
    if(in_properties AND property_name STREQUAL "")
      if(arg IN_LIST options OR arg IN_LIST one OR arg IN_LIST multi)
        if(NOT arg MATCHES "^(TIMEOUT|LABELS|WORKING_DIRECTORY)$")
          set(in_properties FALSE)
        endif()
      endif()
    endif()
    if(NOT in_properties)
      list(APPEND rest "${arg}")
    elseif(property_name STREQUAL "")
      set(property_name "${arg}")
    elseif(property_name STREQUAL "TIMEOUT")
      list(APPEND rest TIMEOUT "${arg}")
      set(property_name "")
    else()
      list(APPEND properties "${property_name}" "${arg}")
      set(property_name "")
    endif()
  endforeach()
  if(NOT property_name STREQUAL "")
    message(FATAL_ERROR "${fn}: PROPERTIES expects name/value pairs")
  endif()
  cmake_parse_arguments(ARG "${options}" "${one}" "${multi}" ${rest})
  set(ARG_PROPERTIES ${properties})
  _sandrun_no_stray("${fn}" ARG)
  if(NOT TARGET "${target}")
    message(FATAL_ERROR "${fn}: '${target}' is not a target")
  endif()
  get_target_property(type "${target}" TYPE)
  if(NOT type STREQUAL "EXECUTABLE")
    message(FATAL_ERROR "${fn}: '${target}' is a ${type}, not an executable")
  endif()
  if(NOT DEFINED ARG_DISCOVERY_TIMEOUT)
    set(ARG_DISCOVERY_TIMEOUT 30)
  elseif(NOT ARG_DISCOVERY_TIMEOUT MATCHES "^[0-9]+$" OR ARG_DISCOVERY_TIMEOUT EQUAL 0)
    message(FATAL_ERROR "${fn}: DISCOVERY_TIMEOUT must be whole seconds, got "
                        "'${ARG_DISCOVERY_TIMEOUT}'")
  endif()
  if(NOT DEFINED ARG_DISCOVERY_MODE)
    if(DEFINED CMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE)
      set(ARG_DISCOVERY_MODE "${CMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE}")
    else()
      set(ARG_DISCOVERY_MODE POST_BUILD)
    endif()
  endif()
  if(NOT ARG_DISCOVERY_MODE MATCHES "^(POST_BUILD|PRE_TEST)$")
    message(FATAL_ERROR "${fn}: DISCOVERY_MODE must be POST_BUILD or PRE_TEST, got "
                        "'${ARG_DISCOVERY_MODE}'")
  endif()
  if(NOT DEFINED ARG_TEST_LIST)
    set(ARG_TEST_LIST ${target}_TESTS)
  endif()
  # The tests' WORKING_DIRECTORY is set per test by the discovery script, as
  # gtest_discover_tests does; discovery runs there too.
  # The property keeps the value as given (CTest resolves a relative one);
  # discovery runs in it, resolved against the binary directory.
  set(working_directory "${CMAKE_CURRENT_BINARY_DIR}")
  set(test_working_directory "${CMAKE_CURRENT_BINARY_DIR}")
  if(DEFINED ARG_WORKING_DIRECTORY)
    set(test_working_directory "${ARG_WORKING_DIRECTORY}")
    get_filename_component(working_directory "${ARG_WORKING_DIRECTORY}" ABSOLUTE
                           BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
    unset(ARG_WORKING_DIRECTORY)
  endif()
  _sandrun_sandbox_arguments("${fn}" ARG TRUE)
  # The cases of one binary share warm sandboxes, as under `sandrun gtest`
  # (SANDRUN_ISOLATION=sandbox gives each its own).
  list(APPEND _sandrun_launcher --upload-command --default-isolation process)
  if("FIXTURES_REQUIRED" IN_LIST ARG_PROPERTIES AND "FIXTURES_REQUIRED" IN_LIST _sandrun_properties)
    message(WARNING "${fn}: PROPERTIES FIXTURES_REQUIRED replaces the fixture "
                    "${_sandrun_fixture} that SANDRUN_SERVICE or SANDRUN_REPORT needs; add "
                    "${_sandrun_fixture} to your list")
  endif()
  list(APPEND _sandrun_properties ${ARG_PROPERTIES})

  get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
  # A target may be discovered more than once (other filters or prefixes).
  get_property(calls TARGET ${target} PROPERTY _SANDRUN_DISCOVER_CALLS)
  if(calls)
    math(EXPR calls "${calls} + 1")
    set(stem "${CMAKE_CURRENT_BINARY_DIR}/${target}_sandrun_${calls}")
  else()
    set(calls 1)
    set(stem "${CMAKE_CURRENT_BINARY_DIR}/${target}_sandrun")
  endif()
  set_property(TARGET ${target} PROPERTY _SANDRUN_DISCOVER_CALLS ${calls})
  if(multi_config)
    set(tests_file "${stem}_tests-$<CONFIG>.cmake")
    set(include_tests "${stem}_tests-\${CTEST_CONFIGURATION_TYPE}.cmake")
    set(args_file "${stem}_discovery-$<CONFIG>.cmake")
    set(include_args "${stem}_discovery-\${CTEST_CONFIGURATION_TYPE}.cmake")
  else()
    set(tests_file "${stem}_tests.cmake")
    set(include_tests "${tests_file}")
    set(args_file "${stem}_discovery.cmake")
    set(include_args "${args_file}")
  endif()

  # What the discovery script needs, resolved per configuration.
  set(content "# Written by sandrun_discover_tests(${target}); read at build time.\n")
  string(APPEND content "set(SANDRUN_TARGET [==[${target}]==])\n"
                        "set(SANDRUN_BINARY [==[$<TARGET_FILE:${target}>]==])\n"
                        "set(SANDRUN_TESTS_FILE [==[${tests_file}]==])\n"
                        "set(SANDRUN_TEST_LIST [==[${ARG_TEST_LIST}]==])\n"
                        "set(SANDRUN_TEST_PREFIX [==[${ARG_TEST_PREFIX}]==])\n"
                        "set(SANDRUN_TEST_SUFFIX [==[${ARG_TEST_SUFFIX}]==])\n"
                        "set(SANDRUN_TEST_FILTER [==[${ARG_TEST_FILTER}]==])\n"
                        "set(SANDRUN_NO_PRETTY_TYPES [==[${ARG_NO_PRETTY_TYPES}]==])\n"
                        "set(SANDRUN_NO_PRETTY_VALUES [==[${ARG_NO_PRETTY_VALUES}]==])\n"
                        "set(SANDRUN_WORKING_DIRECTORY [==[${working_directory}]==])\n"
                        "set(SANDRUN_TEST_WORKING_DIRECTORY [==[${test_working_directory}]==])\n"
                        "set(SANDRUN_DISCOVERY_TIMEOUT [==[${ARG_DISCOVERY_TIMEOUT}]==])\n"
                        "set(SANDRUN_XML_OUTPUT_DIR [==[${ARG_XML_OUTPUT_DIR}]==])\n")
  _sandrun_list_code(code SANDRUN_LAUNCHER ${_sandrun_launcher})
  string(APPEND content "${code}")
  _sandrun_list_code(code SANDRUN_EXTRA_ARGS ${ARG_EXTRA_ARGS})
  string(APPEND content "${code}")
  _sandrun_list_code(code SANDRUN_PROPERTIES ${_sandrun_properties})
  string(APPEND content "${code}")
  file(GENERATE OUTPUT "${args_file}" CONTENT "${content}")

  get_property(module_dir GLOBAL PROPERTY _SANDRUN_CTEST_MODULE_DIR)
  set(discover "${module_dir}/SandrunDiscoverTests.cmake")
  set(include_file "${stem}_include.cmake")
  if(ARG_DISCOVERY_MODE STREQUAL "POST_BUILD")
    add_custom_command(TARGET ${target} POST_BUILD
      COMMAND "${CMAKE_COMMAND}" -D "SANDRUN_DISCOVERY_ARGS=${args_file}" -P "${discover}"
      BYPRODUCTS "${tests_file}"
      COMMENT "Listing the GoogleTest cases of ${target} for sandrun"
      VERBATIM)
    # ctest reads this: the listed cases, or one failing test until built.
    file(WRITE "${include_file}"
         "if(EXISTS \"${include_tests}\")\n"
         "  include(\"${include_tests}\")\n"
         "else()\n"
         "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
         "endif()\n")
  else()
    # PRE_TEST: ctest lists the cases itself when the binary is newer than
    # the last listing (for binaries that cannot run at build time).
    file(WRITE "${include_file}"
         "include(\"${include_args}\")\n"
         "if(NOT EXISTS \"\${SANDRUN_BINARY}\")\n"
         "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
         "  return()\n"
         "endif()\n"
         "if(NOT EXISTS \"\${SANDRUN_TESTS_FILE}\" OR\n"
         "   \"\${SANDRUN_BINARY}\" IS_NEWER_THAN \"\${SANDRUN_TESTS_FILE}\")\n"
         "  execute_process(COMMAND \"${CMAKE_COMMAND}\" -D \"SANDRUN_DISCOVERY_ARGS=${include_args}\"\n"
         "                          -P \"${discover}\"\n"
         "                  RESULT_VARIABLE sandrun_rc ERROR_VARIABLE sandrun_err)\n"
         "  if(NOT sandrun_rc STREQUAL \"0\")\n"
         "    message(WARNING \"\${sandrun_err}\")\n"
         "    add_test(${target}_DISCOVERY_FAILED ${target}_DISCOVERY_FAILED)\n"
         "    return()\n"
         "  endif()\n"
         "endif()\n"
         "include(\"\${SANDRUN_TESTS_FILE}\")\n")
  endif()
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()

function(sandrun_sandbox_directory_tests)
  _sandrun_sandbox_keywords()
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "${_SANDRUN_SANDBOX_ONE}"
                        "TARGETS;EXCLUDE_TESTS;${_SANDRUN_SANDBOX_MULTI}")
  set(fn sandrun_sandbox_directory_tests)
  _sandrun_no_stray(${fn} ARG)
  if(DEFINED ARG_WORKING_DIRECTORY)
    message(FATAL_ERROR "${fn}: WORKING_DIRECTORY is each add_test()'s own; set it there")
  endif()
  get_property(done DIRECTORY PROPERTY _SANDRUN_DIRECTORY_LAUNCHER SET)
  if(done)
    message(FATAL_ERROR "${fn}: called twice in ${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  foreach(target IN LISTS ARG_TARGETS)
    if(NOT TARGET "${target}")
      message(FATAL_ERROR "${fn}: TARGETS entry '${target}' is not a target")
    endif()
  endforeach()
  # TIMEOUT here is a default for tests that have none; each test's own
  # TIMEOUT sets its deadline at the end of the directory.
  set(timeout "${ARG_TIMEOUT}")
  set(margin "${ARG_TIMEOUT_MARGIN}")
  unset(ARG_TIMEOUT)
  unset(ARG_TIMEOUT_MARGIN)
  if(NOT timeout STREQUAL "")
    _sandrun_ctest_timeout(unused "${fn}" "${timeout}" "${margin}")
  elseif(NOT margin STREQUAL "")
    message(FATAL_ERROR "${fn}: TIMEOUT_MARGIN needs TIMEOUT")
  endif()
  # TEST_LAUNCHER (CMake >= 3.29) evaluates generator expressions;
  # CROSSCOMPILING_EMULATOR on 3.25-3.28 does not, so it gets a path.
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.29)
    set(genex TRUE)
  else()
    set(genex FALSE)
    if(POLICY CMP0158)
      cmake_policy(GET CMP0158 policy)
      if(policy STREQUAL "NEW")
        message(FATAL_ERROR "${fn}: CMake ${CMAKE_VERSION} with policy CMP0158 NEW ignores "
                            "CROSSCOMPILING_EMULATOR in add_test() and has no TEST_LAUNCHER; "
                            "use CMake 3.29 or later, or set CMP0158 to OLD")
      endif()
    endif()
  endif()
  _sandrun_sandbox_arguments(${fn} ARG ${genex})
  list(APPEND _sandrun_launcher --upload-command --)
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_LAUNCHER "${_sandrun_launcher}")
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_LABELS "${ARG_LABELS}")
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_TARGETS "${ARG_TARGETS}")
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_EXCLUDE "${ARG_EXCLUDE_TESTS}")
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_TIMEOUT "${timeout}")
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_MARGIN "${margin}")
  set_property(DIRECTORY PROPERTY _SANDRUN_DIRECTORY_FIXTURE "${_sandrun_fixture}")
  # Tests and targets added after this call count too: wrap at the end.
  cmake_language(DEFER CALL _sandrun_wrap_directory_tests)
endfunction()

# The deferred half of sandrun_sandbox_directory_tests(), at the end of the
# directory: launcher on the executables, name and deadline on each test.
function(_sandrun_wrap_directory_tests)
  set(fn sandrun_sandbox_directory_tests)
  get_property(launcher DIRECTORY PROPERTY _SANDRUN_DIRECTORY_LAUNCHER)
  get_property(labels DIRECTORY PROPERTY _SANDRUN_DIRECTORY_LABELS)
  get_property(targets DIRECTORY PROPERTY _SANDRUN_DIRECTORY_TARGETS)
  get_property(exclude DIRECTORY PROPERTY _SANDRUN_DIRECTORY_EXCLUDE)
  get_property(default_timeout DIRECTORY PROPERTY _SANDRUN_DIRECTORY_TIMEOUT)
  get_property(margin DIRECTORY PROPERTY _SANDRUN_DIRECTORY_MARGIN)
  get_property(own DIRECTORY PROPERTY BUILDSYSTEM_TARGETS)
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.29)
    set(property TEST_LAUNCHER)
  else()
    set(property CROSSCOMPILING_EMULATOR)
  endif()
  foreach(target IN LISTS own targets)
    get_target_property(type ${target} TYPE)
    if(NOT type STREQUAL "EXECUTABLE")
      continue()
    endif()
    get_target_property(existing ${target} ${property})
    if(existing)
      message(WARNING "${fn}: ${target} already has ${property} '${existing}'; "
                      "its tests do not run through sandrun")
      continue()
    endif()
    set_property(TARGET ${target} PROPERTY ${property} "${launcher}")
  endforeach()

  get_property(fixture DIRECTORY PROPERTY _SANDRUN_DIRECTORY_FIXTURE)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(test IN LISTS tests)
    if(test IN_LIST exclude OR test MATCHES "^sandrun\\.(report|service\\.start|service\\.stop)$")
      continue()
    endif()
    if(fixture)
      set_property(TEST "${test}" APPEND PROPERTY FIXTURES_REQUIRED ${fixture})
    endif()
    # The launcher is shared by every test of a target; the record's name
    # and the deadline come from the test's environment.
    set_property(TEST "${test}" APPEND PROPERTY ENVIRONMENT "SANDRUN_NAME=${test}")
    get_test_property("${test}" TIMEOUT timeout)
    if(NOT timeout AND NOT default_timeout STREQUAL "")
      set(timeout ${default_timeout})
    endif()
    if(timeout)
      # The test's TIMEOUT is the command's time; CTest gets the margin on top.
      _sandrun_ctest_timeout(ctest_timeout "${fn}(${test})" "${timeout}" "${margin}")
      set_tests_properties("${test}" PROPERTIES TIMEOUT ${ctest_timeout})
      set_property(TEST "${test}" APPEND PROPERTY ENVIRONMENT
                   "SANDRUN_TIMEOUT=${timeout}" "SANDRUN_LIFETIME=${ctest_timeout}")
    endif()
    if(labels)
      set_property(TEST "${test}" APPEND PROPERTY LABELS ${labels})
    endif()
  endforeach()
endfunction()
