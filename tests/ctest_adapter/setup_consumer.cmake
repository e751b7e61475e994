# Fixture of the CTest adapter's end-to-end tests: installs this build of
# sandrun to a fresh prefix (as a user would), then configures and builds the
# consumer project and the example plugin (examples/plugin) against it with
# find_package(Sandrun).
#   cmake -D BUILD_DIR=... -D WORK=... -D SOURCE=... -D PLUGIN_SOURCE=... -D GENERATOR=...
#         [-D MAKE_PROGRAM=...] [-D CXX=...] [-D LAUNCHER=...] -P setup_consumer.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var BUILD_DIR WORK SOURCE PLUGIN_SOURCE GENERATOR)
  if(NOT ${var})
    message(FATAL_ERROR "setup_consumer: -D ${var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "setup_consumer: ${what} failed (${rc}):\n${out}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK}")
run("installing sandrun" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${WORK}/prefix")

# A name of its own per fixture run, so the Docker test finds only its containers.
string(RANDOM LENGTH 8 ALPHABET 0123456789abcdef suffix)
set(args -S "${SOURCE}" -B "${WORK}/build" -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Debug
    "-DCMAKE_PREFIX_PATH=${WORK}/prefix" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
    "-DCONSUMER_KILL_NAME=tool.killed_by_ctest.${suffix}")
if(MAKE_PROGRAM)
  list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX)
  list(APPEND args "-DCMAKE_CXX_COMPILER=${CXX}")
endif()
if(LAUNCHER)
  list(APPEND args "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}")
endif()
run("configuring the consumer" "${CMAKE_COMMAND}" ${args})
run("building the consumer" "${CMAKE_COMMAND}" --build "${WORK}/build" -j 2)
message(STATUS "setup_consumer: consumer built in ${WORK}/build against ${WORK}/prefix")

list(TRANSFORM args REPLACE "^${SOURCE}$" "${PLUGIN_SOURCE}")
list(TRANSFORM args REPLACE "^${WORK}/build$" "${WORK}/plugin-build")
run("configuring the example plugin" "${CMAKE_COMMAND}" ${args})
run("building the example plugin" "${CMAKE_COMMAND}" --build "${WORK}/plugin-build" -j 2)
message(STATUS "setup_consumer: example plugin built in ${WORK}/plugin-build")
