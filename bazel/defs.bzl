"""Macros that turn the project's files into Bazel targets (see docs/bazel.md)."""

_RUNNER = "//bazel:pytest_main.py"

def _basename_no_ext(path):
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".py"):
        name = name[:-len(".py")]
    return name

def _test_name(path):
    """tests/a_test.py -> a_test; tests/sub/b_test.py -> sub/b_test."""
    name = path
    if name.startswith("tests/"):
        name = name[len("tests/"):]
    if name.endswith(".py"):
        name = name[:-len(".py")]
    return name

def pytest_test(name, src, deps = [], data = [], args = [], **kwargs):
    """A py_test that runs one pytest file through //bazel:pytest_main.py.

    Args:
      name: target name.
      src: the test file, e.g. "tests/foo_test.py".
      deps: py_library deps (third-party packages come from .venv).
      data: files the test reads at run time.
      args: extra pytest arguments.
      **kwargs: other py_test attributes (size, timeout, tags, ...).
    """
    kwargs.setdefault("size", "medium")
    kwargs.setdefault("timeout", "long")
    native.py_test(
        name = name,
        srcs = [_RUNNER, src],
        main = _RUNNER,
        args = ["$(rootpath %s)" % src] + args,
        deps = deps,
        data = data,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )

def pytest_tests(srcs, deps = [], data = [], overrides = {}, **kwargs):
    """One pytest_test per file, named after the file.

    "tests/a_test.py" becomes //:a_test, "tests/sub/b_test.py" //:sub/b_test.

    Args:
      srcs: test files, normally glob(["tests/*_test.py"]).
      deps: deps of every test.
      data: data of every test.
      overrides: {"a_test": {"size": "large", "data": [...]}} per-test extra
        attributes; "deps" and "data" given here are added to the common ones.
      **kwargs: attributes for every test.
    """
    names = {}
    for src in srcs:
        name = _test_name(src)
        if name in names:
            fail("two test files map to target %r: %s and %s" % (name, names[name], src))
        names[name] = src
        extra = dict(overrides.get(name, {}))
        attrs = dict(kwargs)
        attrs.update(extra)
        attrs["deps"] = deps + extra.get("deps", [])
        attrs["data"] = data + extra.get("data", [])
        pytest_test(name = name, src = src, **attrs)
    for name in overrides:
        if name not in names:
            fail("overrides names %r, which is not a test file" % name)

def py_tool_binaries(srcs, deps = [], data = [], reserved = [], **kwargs):
    """One py_binary per script, named after the file ("tools/make_x.py" -> "make_x").

    Args:
      srcs: the scripts, normally glob(["tools/*.py"]).
      deps: deps of every binary.
      data: data of every binary.
      reserved: names that must not be used as target names (they clash with
        other targets or output folders); such scripts get a "tool_" prefix.
      **kwargs: other py_binary attributes.
    """
    for src in srcs:
        name = _basename_no_ext(src)
        if name in reserved:
            name = "tool_" + name
        native.py_binary(
            name = name,
            srcs = [src],
            main = src,
            deps = deps,
            data = data,
            python_version = "PY3",
            srcs_version = "PY3",
            **kwargs
        )
