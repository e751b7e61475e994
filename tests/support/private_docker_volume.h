// A Docker result volume of one test's own. Tests that run on the Docker
// backend would otherwise write into `sandrun-results`, the default volume:
// on a developer's machine that is their real archive, and on a CI machine
// whose engine persists it grows with every run (and `results list` or
// `results show latest` there may see another test's run).
#ifndef SANDRUN_TESTS_SUPPORT_PRIVATE_DOCKER_VOLUME_H_
#define SANDRUN_TESTS_SUPPORT_PRIVATE_DOCKER_VOLUME_H_

#include <filesystem>
#include <string>

namespace sandrun::testing {

/// Names a fresh volume `sandrun-test-<purpose>-<random>` in `dir`/sandrun.json
/// (so every sandrun started at or below `dir` uses it) and, when it goes,
/// removes the volume and its archive helper container. A test that writes a
/// sandrun.json of its own below `dir` loses the private volume.
class PrivateDockerVolume {
 public:
  PrivateDockerVolume(const std::filesystem::path& dir, const std::string& purpose);
  ~PrivateDockerVolume();
  PrivateDockerVolume(const PrivateDockerVolume&) = delete;
  PrivateDockerVolume& operator=(const PrivateDockerVolume&) = delete;

  const std::string& name() const { return name_; }
  /// The sandrun.json naming it, for SANDRUN_CONFIG where the walk up from
  /// the working directory would not find it.
  const std::filesystem::path& config() const { return config_; }

 private:
  std::string name_;
  std::filesystem::path config_;
};

}  // namespace sandrun::testing

#endif  // SANDRUN_TESTS_SUPPORT_PRIVATE_DOCKER_VOLUME_H_
