// A tiny dynamically linked C++ program, compiled with the host's g++ for
// the portable-executable tests (core planning, Docker end to end).
#ifndef SANDRUN_TESTS_CORE_PORTABLE_TEST_PROGRAM_H_
#define SANDRUN_TESTS_CORE_PORTABLE_TEST_PROGRAM_H_

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/test_util.h"

namespace sandrun::testing {

/// Builds `dir`/hello, which prints "hello from C++" and its arguments and
/// needs libstdc++; an empty path (and a test failure) if g++ fails.
inline std::filesystem::path BuildHelloProgram(const std::filesystem::path& dir) {
  std::filesystem::path source = dir / "hello.cc";
  std::ofstream(source) << "#include <iostream>\n#include <string>\n#include <vector>\n"
                           "int main(int argc, char** argv) {\n"
                           "  std::vector<std::string> args(argv + 1, argv + argc);\n"
                           "  std::cout << \"hello from C++\";\n"
                           "  for (const auto& a : args) std::cout << ' ' << a;\n"
                           "  std::cout << std::endl;\n  return 0;\n}\n";
  std::filesystem::path exe = dir / "hello";
  auto out = RunCommand({"g++", "-O0", "-o", exe.string(), source.string()});
  if (out.exit_code != 0) {
    ADD_FAILURE() << "g++ failed: " << out.err;
    return {};
  }
  return exe;
}

}  // namespace sandrun::testing

#endif  // SANDRUN_TESTS_CORE_PORTABLE_TEST_PROGRAM_H_
