// A Task as JSON and back, for handing a task to another sandrun process on
// this host (`sandrun exec --service`). Everything of the task but its
// output callback (the receiver sets its own) and its stdin (sent apart:
// JSON holds text, stdin may be any bytes). Host paths (uploads, host
// copies) are kept as given: both ends must see the same files.
#ifndef SANDRUN_TASK_JSON_H_
#define SANDRUN_TASK_JSON_H_

#include <string>

#include "sandrun/engine.h"
#include "sandrun/status.h"

namespace sandrun {

/// kInvalidArgument when a text of the task is not UTF-8 (JSON cannot carry it).
Result<std::string> TaskToJson(const Task& task);
/// kInvalidArgument naming what is missing or malformed.
Result<Task> TaskFromJson(const std::string& text);

}  // namespace sandrun

#endif  // SANDRUN_TASK_JSON_H_
