"""Offline stub of @rules_java//java:defs.bzl for Bazel 4.2.3.

Each macro forwards to the native rule, as the real rules_java of that era
did. Toolchain resolution loads @bazel_tools//tools/jdk (registered as
@bazel_tools//tools/jdk:all), which needs java_import, java_runtime and
java_toolchain. The rest covers every other load() of this file in Bazel
4.2.3's @bazel_tools.
"""

def java_binary(**attrs):
    native.java_binary(**attrs)

def java_import(**attrs):
    native.java_import(**attrs)

def java_library(**attrs):
    native.java_library(**attrs)

def java_lite_proto_library(**attrs):
    native.java_lite_proto_library(**attrs)

def java_package_configuration(**attrs):
    native.java_package_configuration(**attrs)

def java_plugin(**attrs):
    native.java_plugin(**attrs)

def java_proto_library(**attrs):
    native.java_proto_library(**attrs)

def java_runtime(**attrs):
    native.java_runtime(**attrs)

def java_test(**attrs):
    native.java_test(**attrs)

def java_toolchain(**attrs):
    native.java_toolchain(**attrs)
