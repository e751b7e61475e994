# Built-in backend plugins declare themselves here:
#
#   sandrun_add_builtin_backend(NAME local TARGET sandrun_local FUNCTION RegisterLocalBackend)
#
# says that static library TARGET provides
#   void sandrun::FUNCTION(sandrun::BackendRegistry&);
#
# By default (SANDRUN_STATIC_PLUGINS OFF) this makes a loadable module,
# <libdir>/sandrun/plugins/sandrun-NAME.so, exporting the C entry point every
# plugin exports (sandrun/plugin_abi.h); the core finds it beside itself at
# run time, and nothing links TARGET but the module and the tests.
# With SANDRUN_STATIC_PLUGINS ON, sandrun_generate_builtin_table() writes a
# table calling each FUNCTION into sandrun_builtin_backends, which then links
# every TARGET: explicit registration, no static initialisers to be dropped.
# Either way, users call RegisterAllBackends (sandrun/registry.h).

function(sandrun_add_builtin_backend)
  cmake_parse_arguments(ARG "" "NAME;TARGET;FUNCTION" "" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY SANDRUN_BUILTIN_TARGETS ${ARG_TARGET})
  set_property(GLOBAL APPEND PROPERTY SANDRUN_BUILTIN_FUNCTIONS ${ARG_FUNCTION})
  if(SANDRUN_STATIC_PLUGINS)
    return()
  endif()
  set(SANDRUN_MODULE_NAME ${ARG_NAME})
  set(SANDRUN_MODULE_FUNCTION ${ARG_FUNCTION})
  set(entry ${PROJECT_BINARY_DIR}/generated/plugin_${ARG_NAME}_entry.cc)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/plugin_module_entry.cc.in ${entry} @ONLY)
  set(module sandrun_${ARG_NAME}_module)
  add_library(${module} MODULE ${entry})
  # The module shows only its entry point; the static library's symbols
  # (Boost, gRPC glue) stay private to it.
  target_link_libraries(${module} PRIVATE ${ARG_TARGET} sandrun::core -Wl,--exclude-libs,ALL)
  set_target_properties(${module} PROPERTIES
    PREFIX "" OUTPUT_NAME sandrun-${ARG_NAME}
    LIBRARY_OUTPUT_DIRECTORY ${SANDRUN_LIBRARY_DIR}/${SANDRUN_PLUGIN_SUBDIR}
    CXX_VISIBILITY_PRESET hidden
    INSTALL_RPATH "$ORIGIN/../..")
  set_property(GLOBAL APPEND PROPERTY SANDRUN_PLUGIN_MODULES ${module})
endfunction()

function(sandrun_generate_builtin_table)
  set(SANDRUN_BUILTIN_DECLARATIONS "")
  set(SANDRUN_BUILTIN_CALLS "")
  set(targets "")
  if(SANDRUN_STATIC_PLUGINS)
    get_property(targets GLOBAL PROPERTY SANDRUN_BUILTIN_TARGETS)
    get_property(functions GLOBAL PROPERTY SANDRUN_BUILTIN_FUNCTIONS)
    foreach(fn IN LISTS functions)
      string(APPEND SANDRUN_BUILTIN_DECLARATIONS "void ${fn}(BackendRegistry& registry);\n")
      string(APPEND SANDRUN_BUILTIN_CALLS "  ${fn}(registry);\n")
    endforeach()
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/builtin_backends.cc.in
                 ${PROJECT_BINARY_DIR}/generated/builtin_backends.cc @ONLY)
  add_library(sandrun_builtin_backends STATIC ${PROJECT_BINARY_DIR}/generated/builtin_backends.cc)
  target_link_libraries(sandrun_builtin_backends PUBLIC sandrun_core ${targets})
  add_library(sandrun::builtin_backends ALIAS sandrun_builtin_backends)

  get_property(modules GLOBAL PROPERTY SANDRUN_PLUGIN_MODULES)
  if(modules)
    # `ninja sandrun_plugins`: every backend module; the CLI depends on it.
    add_custom_target(sandrun_plugins DEPENDS ${modules})
  endif()
endfunction()
