"""Offline stub of @rules_cc//cc:defs.bzl for Bazel 4.2.3.

Each macro forwards to the native rule, as the real rules_cc of that era did.
A `bazel test` of py_test targets loads @bazel_tools//tools/cpp,
@bazel_tools//tools/jdk, @bazel_tools//src/tools/launcher and the
auto-configured @local_config_cc, which need cc_binary, cc_library, cc_test,
cc_toolchain and cc_toolchain_suite. The rest covers every other load() of
this file in Bazel 4.2.3's @bazel_tools.
"""

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_import(**attrs):
    native.cc_import(**attrs)

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def fdo_prefetch_hints(**attrs):
    native.fdo_prefetch_hints(**attrs)

def fdo_profile(**attrs):
    native.fdo_profile(**attrs)

def objc_import(**attrs):
    native.objc_import(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)
