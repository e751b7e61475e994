# The installed Sandrun package (docs/ctest.md, docs/plugins.md):
# `find_package(Sandrun)` gives
#   Sandrun::sandrun   the CLI (export set SandrunTargets, from core/cli)
#   sandrun::core, sandrun::builtin_backends, sandrun::gtest_protocol,
#   sandrun::gtest, sandrun::gtest_main
#                      the libraries and their headers (SandrunLibraryTargets)
#   the CTest functions (ctest_adapter/cmake/SandrunCTest.cmake)
# and installs the backend modules in <libdir>/sandrun/plugins, where the
# core finds them. The exported targets need only what the core needs:
# no backend's dependency (Boost, libarchive, gRPC) is looked for by
# find_package(Sandrun) — unless the backends are linked statically
# (SANDRUN_STATIC_PLUGINS), when their libraries are exported too.
# sandrun_install_package() runs once, after every component is defined.
include(CMakePackageConfigHelpers)

function(sandrun_install_package)
  set(destination ${CMAKE_INSTALL_LIBDIR}/cmake/Sandrun)
  set(libraries sandrun_core sandrun_builtin_backends sandrun_gtest_protocol)
  # What SandrunConfig.cmake must find before the libraries can be linked.
  set(SANDRUN_PACKAGE_DEPENDENCIES "Threads;nlohmann_json")
  if(SANDRUN_STATIC_PLUGINS)
    get_property(backends GLOBAL PROPERTY SANDRUN_BUILTIN_TARGETS)
    list(APPEND libraries ${backends})
    list(APPEND SANDRUN_PACKAGE_DEPENDENCIES OpenSSL)
    if(TARGET sandrun_modal_proto)
      list(APPEND libraries sandrun_modal_proto)
    endif()
    if(TARGET sandrun_plugin_tar)
      list(APPEND libraries sandrun_plugin_tar)
      list(APPEND SANDRUN_PACKAGE_DEPENDENCIES LibArchive)
    endif()
    if(TARGET sandrun_local OR TARGET sandrun_docker OR TARGET sandrun_modal)
      list(APPEND SANDRUN_PACKAGE_DEPENDENCIES Boost)
    endif()
    if(TARGET sandrun_modal)
      list(APPEND SANDRUN_PACKAGE_DEPENDENCIES Protobuf grpc++)
    endif()
  else()
    get_property(modules GLOBAL PROPERTY SANDRUN_PLUGIN_MODULES)
    install(TARGETS ${modules} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/${SANDRUN_PLUGIN_SUBDIR})
  endif()
  if(TARGET sandrun_gtest_main)
    list(APPEND libraries sandrun_gtest sandrun_gtest_main)
    list(APPEND SANDRUN_PACKAGE_DEPENDENCIES GTest)
  endif()
  foreach(library IN LISTS libraries)
    # sandrun_gtest_main -> sandrun::gtest_main, as in the build tree.
    string(REGEX REPLACE "^sandrun_" "" name ${library})
    set_target_properties(${library} PROPERTIES EXPORT_NAME ${name})
  endforeach()
  install(TARGETS ${libraries} EXPORT SandrunLibraryTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/core/include/sandrun
                    ${PROJECT_SOURCE_DIR}/gtest_adapter/include/sandrun
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
          PATTERN gtest_runner.h EXCLUDE)  # the CLI's, not installed
  install(EXPORT SandrunLibraryTargets NAMESPACE sandrun:: DESTINATION ${destination})
  install(EXPORT SandrunTargets NAMESPACE Sandrun:: DESTINATION ${destination})

  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/SandrunConfig.cmake.in
    ${PROJECT_BINARY_DIR}/package/SandrunConfig.cmake
    INSTALL_DESTINATION ${destination})
  # 0.x: a minor version may change the functions' arguments.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/package/SandrunConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
  install(FILES
    ${PROJECT_BINARY_DIR}/package/SandrunConfig.cmake
    ${PROJECT_BINARY_DIR}/package/SandrunConfigVersion.cmake
    ${PROJECT_SOURCE_DIR}/ctest_adapter/cmake/SandrunCTest.cmake
    ${PROJECT_SOURCE_DIR}/ctest_adapter/cmake/SandrunDiscoverTests.cmake
    DESTINATION ${destination})
endfunction()
