#include "json_errors.h"

namespace sandrun {

Status JsonSyntaxError(const std::string& origin, const std::string& text,
                       const nlohmann::json::parse_error& error) {
  // error.byte is 1-based: the position of the offending character.
  std::size_t offset = error.byte == 0 ? 0 : error.byte - 1;
  int line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  std::string what = error.what();
  auto pos = what.find("syntax error");
  return InvalidArgumentError(origin + ":" + std::to_string(line) + ":" + std::to_string(column) +
                              ": invalid JSON: " +
                              (pos == std::string::npos ? what : what.substr(pos)));
}

}  // namespace sandrun
