"""Console-entry wrapper shared by the mtml nodes: init rclpy, build and spin one node, return the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def spin_executor(node: Node, executor: SingleThreadedExecutor) -> None:
    """Default `spin`: serve `node` on `executor` until shutdown."""
    executor.add_node(node)
    executor.spin()


def destroy(node: Node | None, executor: SingleThreadedExecutor) -> None:
    """Default `close`: destroy the node if it was built."""
    if node is not None:
        node.destroy_node()


def run(prog: str, argv: list[str], make_node: Callable[[], Node],
        spin: Callable[[Node, SingleThreadedExecutor], object] = spin_executor,
        close: Callable[[Node | None, SingleThreadedExecutor], None] = destroy) -> int:
    """Init rclpy with `argv`, build a node and spin it; returns 0 on Ctrl-C / shutdown, 2 when building the node
    fails with a ValueError (a bad parameter or model: printed as `prog: error: ...`).

    Any other exception, including a ValueError escaping from a callback while spinning, is a bug: it propagates
    (traceback, exit status 1). An RCLError raised while rclpy is shutting down counts as a shutdown.
    `close(node, executor)` runs before rclpy shuts down (node is None when building it failed); errors of a
    context already shutting down (a second Ctrl-C, RCLError, ExternalShutdownException) do not interrupt it.
    """
    rclpy.init(args=argv)
    node = None
    executor = SingleThreadedExecutor()
    try:
        try:
            node = make_node()
        except ValueError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        spin(node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():  # not a shutdown race: a real failure
            raise
    finally:
        try:
            close(node, executor)
        except (KeyboardInterrupt, ExternalShutdownException, RCLError):
            pass
        rclpy.try_shutdown()
    return 0
