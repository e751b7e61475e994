#!/bin/sh
# Fails when the core reaches into a plugin: the engine never names a backend.
#   - nothing under core/ includes a plugin header;
#   - the engine library (core/src, core/include) never mentions a built-in
#     backend by name in code (comments aside).
set -u
root="$1"
status=0
if grep -rn '#include "plugins/' "$root/core"; then
  echo "layout: core/ includes a plugin header (above)" >&2
  status=1
fi
# Strip // comments, then look for backend names as words.
for f in "$root"/core/src/*.cc "$root"/core/src/*.h "$root"/core/include/sandrun/*.h; do
  [ -f "$f" ] || continue
  if sed 's#//.*##' "$f" | grep -nwiE 'docker|modal|LocalBackend|DockerBackend|ModalBackend'; then
    echo "layout: $f names a backend (above)" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "layout: core names no backend"
exit "$status"
