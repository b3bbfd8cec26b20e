"""Build the colcon workspace ros2_ws (mtml_interfaces + the root package) from the venv's ROS 2 wheels.

Run with the venv's interpreter (`make ws` does): `.venv/bin/python scripts/build_ws.py`.
Idempotent: the CMake export files of the wheels are patched only where they name a missing Python
include directory, and colcon rebuilds only what changed. Exits non-zero with the reason on failure.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WS = ROOT / "ros2_ws"
PACKAGES = ("mtml_interfaces", "mtml")
PROGRESS = ("Starting >>>", "Finished <<<", "Failed", "Aborted", "Summary")

# INTERFACE_INCLUDE_DIRECTORIES "a;b;c" in a CMake export file.
_INCLUDE_DIRS = re.compile(r'(INTERFACE_INCLUDE_DIRECTORIES\s+")([^"]*)(")')
_PY_INCLUDE = re.compile(r"/include/python\d+\.\d+$")
_NUMPY_INCLUDE = re.compile(r"/numpy/(_core|core)/include$")


class BuildError(RuntimeError):
    """A reason the workspace cannot be built."""


def log(msg: str) -> None:
    """Print one progress line."""
    print(f"[build_ws] {msg}", flush=True)


def venv_prefix() -> Path:
    """The virtual environment this script runs in (it holds the ROS 2 wheels)."""
    if sys.prefix == sys.base_prefix:
        raise BuildError(f"run this with the project's venv python (.venv/bin/python), not {sys.executable}")
    prefix = Path(sys.prefix)
    if not (prefix / "share" / "ament_cmake").is_dir():
        raise BuildError(f"{prefix} has no share/ament_cmake: install requirements.txt first (make setup)")
    return prefix


def python_includes() -> tuple[Path, Path]:
    """(Python.h directory, numpy headers directory) of this interpreter."""
    py_inc = Path(sysconfig.get_paths()["include"])
    if not (py_inc / "Python.h").is_file():
        raise BuildError(f"Python development headers missing: no Python.h in {py_inc}")
    try:
        import numpy
    except ImportError as exc:
        raise BuildError("numpy is not installed in the venv") from exc
    np_inc = Path(numpy.get_include())
    if not (np_inc / "numpy" / "arrayobject.h").is_file():
        raise BuildError(f"numpy headers missing in {np_inc}")
    return py_inc, np_inc


def _fix_dirs(dirs: str, py_inc: Path, np_inc: Path, unresolved: set[str]) -> str:
    """Replace missing Python/numpy include directories in a ';'-separated CMake list."""
    out = []
    for d in dirs.split(";"):
        if d and "$" not in d and not Path(d).exists():
            if _PY_INCLUDE.search(d):
                d = str(py_inc)
            elif _NUMPY_INCLUDE.search(d):
                d = str(np_inc)
            else:
                unresolved.add(d)
        out.append(d)
    return ";".join(out)


def patch_cmake_exports(prefix: Path, py_inc: Path, np_inc: Path) -> int:
    """Point the wheels' `*Export.cmake` files at this machine's Python/numpy headers; returns files changed.

    The wheels were built elsewhere, so their exported targets name that machine's include directories,
    which CMake refuses. Only missing directories are rewritten; each file is replaced atomically.
    """
    changed = 0
    unresolved: set[str] = set()
    for path in sorted((prefix / "share").glob("*/cmake/*Export.cmake")):
        text = path.read_text()
        new = _INCLUDE_DIRS.sub(
            lambda m: m.group(1) + _fix_dirs(m.group(2), py_inc, np_inc, unresolved) + m.group(3), text
        )
        if new != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(new)
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
            changed += 1
    for d in sorted(unresolved):
        log(f"warning: an exported include directory does not exist and was left as is: {d}")
    return changed


def build_env(prefix: Path) -> dict[str, str]:
    """Environment for colcon: the venv is the only underlay."""
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = str(prefix)
    env["CMAKE_PREFIX_PATH"] = str(prefix)
    env.pop("COLCON_PREFIX_PATH", None)
    env["PATH"] = os.pathsep.join([str(prefix / "bin"), env.get("PATH", "")])
    # The wheels' shared libraries live in <venv>/lib and site-packages/ros_*.libs.
    site = Path(sysconfig.get_paths()["purelib"])
    libs = [str(prefix / "lib"), *sorted(str(p) for p in site.glob("ros_*.libs"))]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    return env


def check_tools(prefix: Path) -> Path:
    """Return the colcon executable; fail clearly when a build tool is missing."""
    colcon = prefix / "bin" / "colcon"
    if not colcon.is_file():
        raise BuildError(f"colcon not found at {colcon}: pip install -r requirements.txt")
    for tool in ("cmake", "c++", "make"):
        if shutil.which(tool) is None:
            raise BuildError(f"'{tool}' not found on PATH: install cmake and a C++ compiler (apt-get install "
                             "cmake g++ make)")
    link = WS / "src" / "mtml"
    if not (link / "package.xml").is_file():
        raise BuildError(f"{link} must be a symlink to the repo root (ln -s ../.. {link})")
    return colcon


def build() -> Path:
    """Build the workspace; returns the install space."""
    prefix = venv_prefix()
    colcon = check_tools(prefix)
    py_inc, np_inc = python_includes()
    log(f"venv {prefix}; Python headers {py_inc}; numpy headers {np_inc}")
    n = patch_cmake_exports(prefix, py_inc, np_inc)
    log(f"patched {n} CMake export file(s)" if n else "CMake export files already point at existing headers")
    (WS / "build").mkdir(parents=True, exist_ok=True)
    cmd = [
        str(colcon), "build", "--base-paths", "src",
        "--event-handlers", "console_start_end+", "console_direct+",
        "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
    ]
    with open(WS / "build" / ".build_ws.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (make and tests may race)
        log("colcon build in " + str(WS) + " (a clean build takes about 15 s on 2 cores)")
        proc = subprocess.Popen(cmd, cwd=WS, env=build_env(prefix), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        tail: deque[str] = deque(maxlen=60)
        for line in proc.stdout:  # progress lines only; the rest is kept for the error message
            tail.append(line.rstrip())
            if line.startswith(PROGRESS):
                print(line.rstrip(), flush=True)
        proc.wait()
    if proc.returncode != 0:
        raise BuildError(f"colcon build failed (exit {proc.returncode}); last output:\n" + "\n".join(tail))
    install = WS / "install"
    missing = [p for p in PACKAGES if not (install / p / "share" / p / "package.xml").is_file()]
    if missing:
        raise BuildError(f"colcon finished but install/ lacks {', '.join(missing)}")
    log(f"done: install space {install}")
    return install


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="`make clean` removes the build.").parse_args(
        argv)
    try:
        build()
    except BuildError as exc:
        print(f"[build_ws] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
