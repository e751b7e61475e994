// One home for turning a JSON syntax error into a message a person can act
// on: "tasks.json:7:15: invalid JSON: syntax error ...". Used by every reader
// of user-written JSON (sandrun.json, batch files).
#ifndef SANDRUN_CORE_SRC_JSON_ERRORS_H_
#define SANDRUN_CORE_SRC_JSON_ERRORS_H_

#include <string>

#include <nlohmann/json.hpp>

#include "sandrun/status.h"

namespace sandrun {

/// kInvalidArgument naming `origin`, the line and column of the error in
/// `text`, and what the parser said.
Status JsonSyntaxError(const std::string& origin, const std::string& text,
                       const nlohmann::json::parse_error& error);

}  // namespace sandrun

#endif  // SANDRUN_CORE_SRC_JSON_ERRORS_H_
