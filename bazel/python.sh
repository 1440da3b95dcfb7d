#!/bin/sh
# Python interpreter used by Bazel's py_runtime (see bazel/BUILD, docs/bazel.md).
#
# Bazel runs this file from a test's or binary's runfiles tree, where it is a
# symlink back to the source checkout. Resolving that symlink gives the
# workspace root wherever the repository was cloned, and we exec the
# project's virtual environment in it: <workspace>/.venv/bin/python.
self="$(readlink -f "$0" 2>/dev/null || true)"
root=""
case "$self" in
  */bazel/python.sh) root="${self%/bazel/python.sh}" ;;
esac
if [ -z "$root" ] || [ ! -x "$root/.venv/bin/python" ]; then
  # `bazel run` exports the workspace root explicitly.
  if [ -n "${BUILD_WORKSPACE_DIRECTORY:-}" ]; then
    root="$BUILD_WORKSPACE_DIRECTORY"
  fi
fi
py="$root/.venv/bin/python"
if [ ! -x "$py" ]; then
  echo "bazel/python.sh: no virtualenv interpreter at '$py'" >&2
  echo "  (resolved from '$0'); create .venv in the workspace root first." >&2
  exit 127
fi
exec "$py" "$@"
