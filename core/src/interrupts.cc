#include "sandrun/interrupts.h"

#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

namespace sandrun {
namespace {

// Everything the handler touches is set before it is installed and is
// async-signal-safe to use: an atomic, write(2), sem_post(3), _exit(2).
CancelFlag g_flag;
std::atomic<int> g_signal{0};
int g_second_signal_exit_code = kExitInterrupted;
sem_t g_raised;
std::once_flag g_installed;
bool g_any_installed = false;

void OnSignal(int sig) {
  if (g_signal.exchange(sig) != 0) {
    if (g_second_signal_exit_code != 0) _exit(g_second_signal_exit_code);
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_flag.Cancel();
  static const char kMessage[] =
      "\nsandrun: interrupted, stopping sandboxes (press Ctrl-C again to quit at once)\n";
  ssize_t ignored = write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  (void)ignored;
  sem_post(&g_raised);
}

}  // namespace

bool InstallInterruptHandlers(const InterruptHandling& how) {
  std::call_once(g_installed, [&] {
    if (sem_init(&g_raised, 0, 0) != 0) return;
    g_second_signal_exit_code = how.second_signal_exit_code;
    for (int sig : {SIGINT, SIGTERM}) {
      struct sigaction old {};
      if (how.only_over_default &&
          (sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL)) {
        continue;
      }
      struct sigaction action {};
      action.sa_handler = OnSignal;
      sigemptyset(&action.sa_mask);
      if (sigaction(sig, &action, nullptr) == 0) g_any_installed = true;
    }
  });
  return g_any_installed;
}

const CancelFlag& InterruptFlag() { return g_flag; }

int InterruptSignal() { return g_signal.load(); }

void WaitForInterrupt() {
  while (sem_wait(&g_raised) != 0) {
  }
}

}  // namespace sandrun
