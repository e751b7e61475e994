// SIGINT and SIGTERM while sandboxes run: the one handler the CLI and the
// GoogleTest adapter share. The first signal cancels InterruptFlag() (the
// engine then terminates its sandboxes and writes its records) and prints
//   sandrun: interrupted, stopping sandboxes (press Ctrl-C again to quit at once)
// on stderr; a second signal ends the process at once.
#ifndef SANDRUN_INTERRUPTS_H_
#define SANDRUN_INTERRUPTS_H_

#include "sandrun/engine.h"
#include "sandrun/result.h"

namespace sandrun {

struct InterruptHandling {
  /// Installs over a signal's default action only, leaving a program's own
  /// handler alone (the adapter runs inside a user's test binary).
  bool only_over_default = false;
  /// How a second signal ends the process: _exit with this code, or, when
  /// 0, by that signal itself.
  int second_signal_exit_code = kExitInterrupted;
};

/// Installs the handlers; only the first call in a process does anything.
/// Returns whether a handler is installed for at least one of the signals.
bool InstallInterruptHandlers(const InterruptHandling& how = {});

/// Cancelled by the first signal; hand it to Engine::Run.
const CancelFlag& InterruptFlag();

/// The first signal received; 0 while none came.
int InterruptSignal();

/// Blocks until the first signal arrives, for a thread that ends the
/// process once the runs have stopped.
void WaitForInterrupt();

}  // namespace sandrun

#endif  // SANDRUN_INTERRUPTS_H_
