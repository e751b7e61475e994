#!/bin/sh
# Fails when the layering breaks: core <- plugins, core <- adapters <- CLI
# commands, never back. The engine and the CLI never name a backend.
#   - nothing under core/ includes a plugin header;
#   - the engine library (core/src, core/include) includes no adapter header;
#   - neither the engine library nor the CLI (core/cli) mentions a built-in
#     backend by name in code (comments aside): backends declare their auto
#     rank, flags and hints when they register.
set -u
root="$1"
status=0
if grep -rn '#include "plugins/' "$root/core"; then
  echo "layout: core/ includes a plugin header (above)" >&2
  status=1
fi
if grep -rnE '#include "sandrun/(gtest|gtest_protocol|gtest_runner)\.h"' \
     "$root/core/src" "$root/core/include" "$root/core/cli"; then
  echo "layout: core/ includes an adapter header (above)" >&2
  status=1
fi
# Strip // comments, then look for backend names as words.
for f in "$root"/core/src/*.cc "$root"/core/src/*.h "$root"/core/include/sandrun/*.h \
         "$root"/core/cli/*.cc "$root"/core/cli/*.h; do
  [ -f "$f" ] || continue
  if sed 's#//.*##' "$f" | grep -nwiE 'docker|modal|LocalBackend|DockerBackend|ModalBackend'; then
    echo "layout: $f names a backend (above)" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "layout: core and the CLI name no backend"
exit "$status"
