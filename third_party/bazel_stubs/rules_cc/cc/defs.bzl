def cc_binary(**a):
    native.cc_binary(**a)

def cc_library(**a):
    native.cc_library(**a)

def cc_test(**a):
    native.cc_test(**a)

def cc_toolchain(**a):
    native.cc_toolchain(**a)

def cc_toolchain_suite(**a):
    native.cc_toolchain_suite(**a)
