#!/bin/sh
# Placeholder for Bazel's downloaded coverage tools (offline build).
echo "bazel coverage is not supported: @remote_coverage_tools is an offline stub (see docs/bazel.md)" >&2
exit 1
