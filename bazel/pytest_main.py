"""Entry point of the py_test targets made by //bazel:defs.bzl.

Bazel runs `main` of a py_test as a plain script, so a file with only
pytest-style tests (bare `def test_...` functions, fixtures such as
`tmp_path`) would do nothing. This runner hands the one test file named in
argv[1] to pytest and exits with pytest's status, so a failing test, a
collection error or a file with no tests at all (pytest exit code 5) fails
the Bazel target. Any further arguments (`bazel test --test_arg=-k
--test_arg=name`) are passed on to pytest.
"""

import os
import sys


def main(argv):
    if len(argv) < 2:
        sys.stderr.write("usage: pytest_main.py TEST_FILE [PYTEST_ARGS...]\n")
        return 2
    test_file, extra = argv[1], argv[2:]
    if not os.path.isfile(test_file):
        sys.stderr.write(
            f"pytest_main.py: test file {test_file!r} not found (cwd {os.getcwd()})\n"
        )
        return 2

    # Python puts the real (symlink-resolved) folder of this script first on
    # sys.path, i.e. bazel/ of the source checkout; imports must come from
    # the runfiles tree only.
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]

    # The runfiles tree is not ours to write to: no .pyc files, no
    # .pytest_cache (Bazel caches test results itself).
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"

    # Keep everything a test writes inside its private, writable
    # $TEST_TMPDIR: Bazel leaves HOME unset (so ~ would be the read-only
    # /root in the sandbox) and TMPDIR at the shared /tmp.
    test_tmpdir = os.environ.get("TEST_TMPDIR")
    if test_tmpdir:
        os.environ["TMPDIR"] = test_tmpdir
        if not os.environ.get("HOME"):
            os.environ["HOME"] = test_tmpdir
    # Bazel's PATH is /bin:/usr/bin:...; put the interpreter's folder (the
    # .venv's bin/) first, as an activated virtualenv would, so that tests
    # starting "python" or a console script get the project's environment.
    bindir = os.path.dirname(sys.executable)
    if bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")

    import pytest  # from the project's virtualenv

    args = [test_file, "-q", "-p", "no:cacheprovider"]
    if test_tmpdir:
        args.append("--basetemp=" + os.path.join(test_tmpdir, "pytest"))
    # Bazel shows per-test-case results when the test writes this JUnit XML.
    xml_out = os.environ.get("XML_OUTPUT_FILE")
    if xml_out:
        args.append("--junitxml=" + xml_out)
    rc = int(pytest.main(args + extra))
    if rc == 5:  # pytest.ExitCode.NO_TESTS_COLLECTED
        sys.stderr.write(f"pytest_main.py: no tests were collected from {test_file}\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
