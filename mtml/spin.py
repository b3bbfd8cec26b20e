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
    """Init rclpy with `argv`, build a node and spin it; returns 0 on Ctrl-C / shutdown, 2 on ValueError.

    A ValueError from building or spinning is printed as `prog: error: ...`; an RCLError raised while
    rclpy is shutting down counts as a shutdown. `close(node, executor)` runs before rclpy shuts down
    (node is None when building it failed).
    """
    rclpy.init(args=argv)
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        spin(node, executor)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():  # not a shutdown race: a real failure
            raise
    finally:
        close(node, executor)
        rclpy.try_shutdown()
    return 0
