#include "support/private_docker_volume.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun::testing {

PrivateDockerVolume::PrivateDockerVolume(const std::filesystem::path& dir,
                                         const std::string& purpose)
    : name_("sandrun-test-" + purpose + "-" + RandomHex(8)), config_(dir / "sandrun.json") {
  std::ofstream(config_) << R"({"backends": {"docker": {"volume": ")" << name_ << R"("}}})";
}

PrivateDockerVolume::~PrivateDockerVolume() {
  // A test that never reached the engine made no volume: nothing to remove.
  if (RunCommand({"docker", "volume", "inspect", name_}).exit_code != 0) return;
  // The volume's helper container first: it keeps the volume in use.
  CommandOutput helpers = RunCommand({"docker", "ps", "-aq", "--filter", "volume=" + name_});
  std::istringstream helper_ids(helpers.out);
  for (std::string id; std::getline(helper_ids, id);) {
    if (!id.empty()) RunCommand({"docker", "rm", "-f", id});
  }
  CommandOutput removed = RunCommand({"docker", "volume", "rm", name_});
  EXPECT_EQ(removed.exit_code, 0) << "volume " << name_ << " was not removed: " << removed.err;
}

}  // namespace sandrun::testing
