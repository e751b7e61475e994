# Built-in backend plugins register here; the CLI links the generated table.
#
#   sandrun_add_builtin_backend(TARGET sandrun_local FUNCTION RegisterLocalBackend)
#
# declares that library target TARGET provides
#   void sandrun::FUNCTION(sandrun::BackendRegistry&);
# sandrun_generate_builtin_table() then writes builtin_backends.cc calling
# each one, in a library `sandrun_builtin_backends` linking every plugin.
# This is explicit registration: no static initialisers for the linker to drop.

function(sandrun_add_builtin_backend)
  cmake_parse_arguments(ARG "" "TARGET;FUNCTION" "" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY SANDRUN_BUILTIN_TARGETS ${ARG_TARGET})
  set_property(GLOBAL APPEND PROPERTY SANDRUN_BUILTIN_FUNCTIONS ${ARG_FUNCTION})
endfunction()

function(sandrun_generate_builtin_table)
  get_property(targets GLOBAL PROPERTY SANDRUN_BUILTIN_TARGETS)
  get_property(functions GLOBAL PROPERTY SANDRUN_BUILTIN_FUNCTIONS)
  set(SANDRUN_BUILTIN_DECLARATIONS "")
  set(SANDRUN_BUILTIN_CALLS "")
  foreach(fn IN LISTS functions)
    string(APPEND SANDRUN_BUILTIN_DECLARATIONS "void ${fn}(BackendRegistry& registry);\n")
    string(APPEND SANDRUN_BUILTIN_CALLS "  ${fn}(registry);\n")
  endforeach()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/builtin_backends.cc.in
                 ${PROJECT_BINARY_DIR}/generated/builtin_backends.cc @ONLY)
  add_library(sandrun_builtin_backends STATIC ${PROJECT_BINARY_DIR}/generated/builtin_backends.cc)
  target_link_libraries(sandrun_builtin_backends PUBLIC sandrun_core ${targets})
  add_library(sandrun::builtin_backends ALIAS sandrun_builtin_backends)
endfunction()
