// Portable executable uploads (FileUpload::portable).
#include "docker_images.h"

namespace sandrun::docker {

Result<std::string> PortableUploadTar(const std::string& source, const std::string& entry) {
  return UnimplementedError("docker: portable uploads are not available yet (" + source + ")");
}

}  // namespace sandrun::docker
