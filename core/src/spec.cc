#include "sandrun/spec.h"

#include <filesystem>

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

Result<std::string> UploadDestination(const FileUpload& upload) {
  namespace fs = std::filesystem;
  if (!upload.destination.empty()) {
    SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("upload destination", upload.destination));
  }
  // The source's name as the user sees it: "dir/" is "dir", "." is the
  // current directory's name.
  fs::path source = upload.source.empty() ? fs::path() : fs::absolute(upload.source).lexically_normal();
  if (!source.has_filename() && source.has_parent_path()) source = source.parent_path();
  fs::path dest(upload.destination);
  if (dest.empty() || !dest.has_filename() || dest.filename() == ".") {
    if (source.filename().empty()) {
      return InvalidArgumentError("upload source '" + upload.source +
                                  "' has no name to give it in the sandbox: name its destination");
    }
    dest = dest.parent_path() / source.filename();
  }
  return dest.lexically_normal().generic_string();
}

Result<std::string> JoinSandboxPath(std::string_view what, std::string_view base,
                                    std::string_view path, EmptySandboxPath empty) {
  if (path.empty() && empty == EmptySandboxPath::kIsBase) return std::string(base);
  SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath(what, path));
  if (path == ".") return std::string(base);
  return (std::filesystem::path(base) / path).lexically_normal().generic_string();
}

void CommandStop::Request() {
  std::function<void()> on_stop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (requested_) return;
    requested_ = true;
    if (!on_stop_) return;
    on_stop = on_stop_;
    running_ = true;
  }
  on_stop();
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
  idle_.notify_all();
}

bool CommandStop::requested() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requested_;
}

CommandStop::Listener::Listener(std::shared_ptr<CommandStop> stop, std::function<void()> on_stop)
    : stop_(std::move(stop)) {
  if (!stop_) return;
  {
    std::lock_guard<std::mutex> lock(stop_->mu_);
    if (!stop_->requested_) {
      stop_->on_stop_ = std::move(on_stop);
      return;
    }
  }
  on_stop();  // Asked already: heard at once.
}

CommandStop::Listener::~Listener() {
  if (!stop_) return;
  std::unique_lock<std::mutex> lock(stop_->mu_);
  stop_->on_stop_ = nullptr;
  stop_->idle_.wait(lock, [&] { return !stop_->running_; });  // One under way ends first.
}

}  // namespace sandrun
