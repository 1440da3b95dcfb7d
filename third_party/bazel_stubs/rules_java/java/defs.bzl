def java_import(**a):
    native.java_import(**a)

def java_runtime(**a):
    native.java_runtime(**a)

def java_toolchain(**a):
    native.java_toolchain(**a)
