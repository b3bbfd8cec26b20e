"""Environment variables for child processes that use ROS 2: workspace overlay and DDS transport.

Generated interface packages (mtml_interfaces) load shared libraries through the dynamic loader, so
LD_LIBRARY_PATH must be set before a process starts: build the environment here and pass it to
`subprocess.Popen(..., env=...)`. This module does not import rclpy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

_HERE = Path(__file__).resolve().parent
FASTDDS_PROFILE = _HERE / "config" / "fastdds_shm.xml"
RMW = "rmw_fastrtps_cpp"
_PYDIR = f"python{sys.version_info.major}.{sys.version_info.minor}"


def default_install_dir() -> Path:
    """The colcon install space: $MTML_WS_INSTALL, else the checkout's ros2_ws/install, else the one
    this module was installed into (<install>/mtml/lib/pythonX.Y/site-packages/mtml)."""
    if os.environ.get("MTML_WS_INSTALL"):
        return Path(os.environ["MTML_WS_INSTALL"])
    checkout = _HERE.parent / "ros2_ws" / "install"
    if not checkout.is_dir() and len(_HERE.parents) > 4 and _HERE.parents[4].name == "install":
        return _HERE.parents[4]
    return checkout


def _prepend(env: dict[str, str], var: str, entries: list[str]) -> None:
    old = [p for p in env.get(var, "").split(os.pathsep) if p and p not in entries]
    if entries or old:
        env[var] = os.pathsep.join(entries + old)


def overlay_env(install_dir: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) with every package of the install space on AMENT_PREFIX_PATH,
    PYTHONPATH and LD_LIBRARY_PATH; raises FileNotFoundError when the workspace is not built."""
    install = Path(install_dir) if install_dir is not None else default_install_dir()
    if not (install / "mtml_interfaces" / "share" / "mtml_interfaces").is_dir():
        raise FileNotFoundError(f"no built workspace at {install}: run `make ws`")
    prefixes = sorted(p for p in install.iterdir() if (p / "share").is_dir())
    # Run from a source checkout, the checkout's own `mtml` wins over the install space's copy of it.
    from_checkout = (_HERE.parent / "package.xml").is_file()
    env = dict(os.environ if base is None else base)
    _prepend(env, "AMENT_PREFIX_PATH", [str(p) for p in prefixes])
    _prepend(env, "PYTHONPATH", [str(p / "lib" / _PYDIR / "site-packages") for p in prefixes
                                 if (p / "lib" / _PYDIR / "site-packages").is_dir()
                                 and not (from_checkout and p.name == "mtml")])
    _prepend(env, "LD_LIBRARY_PATH", [str(p / "lib") for p in prefixes if any((p / "lib").glob("*.so"))])
    return env


def transport_env(domain_id: int, shm: bool = True, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) set for Fast DDS on this machine only, on `domain_id`; with `shm`
    the package's profile (16 MiB shared-memory segment) is the default participant profile."""
    if not 0 <= int(domain_id) <= 232:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..232, got {domain_id}")
    env = dict(os.environ if base is None else base)
    env["RMW_IMPLEMENTATION"] = RMW
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the discovery range
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if shm:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    else:
        env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    return env


def ros_env(domain_id: int, shm: bool = True, install_dir: Path | None = None,
            base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Workspace overlay plus transport settings: the environment for a ROS child process."""
    return transport_env(domain_id, shm, overlay_env(install_dir, base))


_EXPORTED = ("AMENT_PREFIX_PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "RMW_IMPLEMENTATION",
             "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "FASTRTPS_DEFAULT_PROFILES_FILE")


def main(argv: list[str] | None = None) -> int:
    """Print shell exports for a terminal: eval "$(.venv/bin/python -m mtml.ros_env --domain 7)"."""
    import argparse
    import shlex

    parser = argparse.ArgumentParser(prog="python -m mtml.ros_env", description=main.__doc__)
    parser.add_argument("--domain", type=int, default=0, help="ROS_DOMAIN_ID (default 0)")
    parser.add_argument("--no-shm", action="store_true", help="Fast DDS defaults instead of the SHM profile")
    args = parser.parse_args(argv)
    try:
        env = ros_env(args.domain, shm=not args.no_shm)
    except (FileNotFoundError, ValueError) as exc:
        print(f"ros_env: error: {exc}", file=sys.stderr)
        return 1
    for var in _EXPORTED:
        print(f"export {var}={shlex.quote(env[var])}" if var in env else f"unset {var}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
