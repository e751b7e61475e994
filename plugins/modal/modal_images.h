// Internal to plugins/modal: how a sandbox spec's image becomes a Modal
// image id. A registry tag becomes "FROM <tag>"; a Dockerfile its steps
// (COPY --from= is kept, as Modal's Go SDK keeps it; other COPY and ADD are
// refused: no build context is uploaded). Built through ImageGetOrCreate and
// waited for; one build per definition per backend (Shared::images), however
// many sandboxes ask at once.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_IMAGES_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_IMAGES_H_

#include <string>
#include <vector>

#include "modal_sandbox.h"
#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun::modal {

/// The Dockerfile at `path` as Modal dockerfile_commands: continuation
/// lines joined, comments and blank lines dropped. kUnimplemented for ADD
/// or a COPY without --from=, kInvalidArgument for an empty one, kNotFound for a missing one.
Result<std::vector<std::string>> DockerfileCommands(const std::string& path);

/// The image id for `spec` (its dockerfile, else its image, else the
/// default image), built on first use. A failed build is
/// kFailedPrecondition with the tail of its log.
Result<std::string> ImageIdFor(Shared& shared, const SandboxSpec& spec);

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_IMAGES_H_
