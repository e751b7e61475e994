#include "sandrun/spec.h"

namespace sandrun {

Status CheckSandboxRelativePath(std::string_view what, std::string_view path) {
  auto refuse = [&](const std::string& why) {
    return InvalidArgumentError(std::string(what) + " '" + std::string(path) + "' " + why);
  };
  if (path.empty()) return InvalidArgumentError(std::string(what) + " is empty");
  if (path.find('\0') != std::string_view::npos) return refuse("contains a NUL byte");
  if (path.front() == '/') {
    return refuse("is absolute: give a path relative to the sandbox's working directory");
  }
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(start, end - start) == "..") {
      return refuse("has a '..' component: it must stay inside the sandbox");
    }
    start = end + 1;
  }
  return OkStatus();
}

}  // namespace sandrun
