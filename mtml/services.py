"""The perception node's adaptation services: ~/collect, ~/adapt, ~/cancel_adapt, ~/profiles, ~/recognize and the
auto-recognition timer. A mixin of :class:`mtml.perception_node.PerceptionNode`: each callback checks its request,
calls the :class:`mtml_core.adapt.AdaptationEngine` and answers (slow work in the node's worker thread, awaited by
the adapt coroutine); none of them touches a camera frame."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from mtml_interfaces.srv import Adapt, Collect, Profile, Recognize
from rclpy.task import Future
from std_srvs.srv import Trigger

from mtml.collection import Collector
from mtml.throttle import safe
from mtml_core.adapt import AdaptationEngine, check_name
from mtml_core.adapt.engine import MAX_STEPS
from mtml_core.adapt.labels import check_class_name, check_vp


class AdaptationServices:
    """Service callbacks over the node's engine, collector and worker thread (set up by the node)."""

    engine: AdaptationEngine
    collector: Collector
    worker: ThreadPoolExecutor
    done_lock: threading.Lock
    p: dict[str, Any]
    recent: deque
    adapting: str | None
    last_env: str | None
    last_adapt: str
    closing: bool
    worker_done: Any  # a guard condition: wakes the executor when the worker finished
    collect_timer: Any
    warn: Callable[[str, str], None]  # the node's throttled warning by kind
    get_logger: Callable[[], Any]  # rclpy.node.Node's

    def _not_adapting(self) -> None:
        """ValueError while an adaptation runs (loading a profile would wait for it, holding up inference)."""
        if self.adapting is not None:
            raise ValueError(f"adapting {self.adapting} right now: load a profile when it is done")

    async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the worker thread and await it without blocking the executor."""
        future = Future()

        def finish(result: Any = None, exc: BaseException | None = None) -> None:
            with self.done_lock:
                if future.done() or self.closing:
                    return
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                self.worker_done.trigger()

        def work() -> None:
            try:
                finish(fn(*args))
            except Exception as exc:  # handed to the awaiting service callback
                finish(exc=exc)

        self.worker.submit(work)
        return await future

    def on_collect(self, req: Collect.Request, res: Collect.Response) -> Collect.Response:
        """Start (clearing the environment's frames) or stop collecting labelled frames."""
        try:
            env = check_name(req.environment)
            class_name = check_class_name(req.class_label) if req.class_label else None
            vp = None
            if req.has_vanishing:
                dirs = np.asarray(req.vanishing_directions, np.float32).reshape(3, 3)
                if not np.isfinite(dirs).all():
                    raise ValueError("vanishing_directions: vp_dirs must be finite")
                vp = check_vp(dirs)
        except ValueError as exc:
            res.success, res.message = False, str(exc)
            return res
        if not req.start:
            c = self.collector.stop(env)
            if c is None:
                res.success, res.message = False, f"not collecting for {env!r}"
            elif c is self.collector.finished:
                res.success = True
                res.message = f"collection for {env} had already stopped by itself with {c.added} frames"
            else:
                res.success = True
                res.message = (f"stopped collecting for {env}" + (f" ({c.in_flight} frames still being added)"
                                                                  if c.in_flight else "")
                               + (f" (last problem: {c.last_error})" if c.last_error else ""))
            res.frames = self.engine.buffer.count(env) + (c.in_flight if c is not None else 0)
            return res
        if self.adapting == env:
            res.success, res.message = False, f"adapting {env!r} right now: collect again when it is done"
            return res
        self.engine.buffer.clear(env)
        self.collector.start(env, class_name, vp, self.p["shots"], self.p["collect_rate"])
        self.last_env = env
        self.collect_timer.reset()
        res.success, res.frames = True, 0
        res.message = f"collecting up to {self.p['shots']} frames for {env}"
        return res

    def _check_adapt(self, req: Adapt.Request) -> tuple[str, int]:
        """The environment and step count of an adapt request; ValueError says what is wrong with it."""
        top = MAX_STEPS
        if not 0 <= req.inner_steps <= top:
            raise ValueError(f"inner_steps must be in [0, {top}] (0 = the inner_steps parameter), got "
                             f"{req.inner_steps}")
        if self.adapting is not None:
            raise ValueError(f"adapting {self.adapting} right now: one adaptation at a time")
        if not (req.environment or self.last_env):
            raise ValueError("no environment given and none collected yet")
        return check_name(req.environment or self.last_env), req.inner_steps or self.p["inner_steps"]

    async def on_adapt(self, req: Adapt.Request, res: Adapt.Response) -> Adapt.Response:
        """Adapt to the collected frames in the worker thread; inference keeps running meanwhile."""
        try:
            env, steps = self._check_adapt(req)
        except ValueError as exc:
            res.success, res.message = False, str(exc)
            return res
        c = self.collector.current
        if c is not None and c.env == env:
            self.collector.stop(env)  # frames still with the worker are added before the adaptation starts
        elif self.engine.buffer.count(env) == 0 and not self.collector.jobs:  # answered here: nothing to log
            res.success, res.message = False, f"no frames collected for environment {env!r}"
            return res
        self.get_logger().info(f"adapting {env}: {self.engine.buffer.count(env)} frames, {steps} steps")

        def adapt() -> Any:
            try:
                return self.engine.adapt(env, steps)  # stops itself past adapt_timeout (rejected, with the reason)
            finally:
                self.adapting = None

        self.adapting = env
        try:
            result = await self._in_worker(adapt)
        except ValueError as exc:
            res.success, res.message = False, str(exc)
            return res
        except Exception as exc:  # no request may stop the node
            res.success, res.message = False, f"adaptation failed: internal error {type(exc).__name__}: {exc}"
            return res
        res.success, res.seconds = result.accepted, float(result.seconds)
        res.tasks = list(result.tasks)
        res.loss_before = [float(s.loss_before) for s in result.tasks.values()]
        res.loss_after = [float(s.loss_after) for s in result.tasks.values()]
        if result.accepted:
            shots = max((s.shots for s in result.tasks.values()), default=0)
            res.message = (f"adapted {', '.join(result.tasks)} to {env} from {shots} frames, {steps} steps, in "
                           f"{result.seconds:.1f} s" + (f"; skipped {result.skipped}" if result.skipped else ""))
        else:
            res.message = result.reason
        self.last_adapt = f"{env}: {'accepted' if result.accepted else 'rejected'} ({res.message})"
        self.get_logger().info(f"adapt {self.last_adapt}")
        return res

    def on_cancel_adapt(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        """Stop the running adaptation at its next inner step: ~/adapt answers it rejected, the previous model keeps
        serving, and load / collect / recognize are accepted again."""
        if self.engine.cancel():
            res.success, res.message = True, (f"cancelling the adaptation of {self.adapting}: it stops at its next "
                                              "inner step; the previous model keeps serving")
            self.get_logger().info(res.message)
        else:
            res.success, res.message = False, "no adaptation is running"
        return res

    def on_profiles(self, req: Profile.Request, res: Profile.Response) -> Profile.Response:
        """save / load / list / delete environment profiles (LIST ignores the name)."""
        cmd = req.command
        try:
            if cmd == Profile.Request.LIST:
                res.message = "profiles listed"
            elif cmd == Profile.Request.SAVE:  # an empty name: the adapted environment's name
                path = self.engine.save_profile(check_name(req.name) if req.name else None)
                res.message = f"saved {path.stem} to {path.parent}"
            elif cmd == Profile.Request.LOAD:
                name = check_name(req.name)
                self._not_adapting()
                self.engine.load_profile(name)
                res.message = f"serving profile {name}"
            elif cmd == Profile.Request.DELETE:
                name = check_name(req.name)
                self.engine.delete_profile(name)
                res.message = f"deleted profile {name}"
            else:
                raise ValueError(f"unknown command {safe(cmd, 32)} (save, load, list, delete)")
            res.success = True
        except (ValueError, OSError) as exc:
            res.success, res.message = False, str(exc)
        res.names = [str(s["name"]) for s in self.engine.list_profiles()]
        return res

    def on_recognize(self, req: Recognize.Request, res: Recognize.Response) -> Recognize.Response:
        """Which saved profile matches the recent frames (optionally load it)."""
        frames = list(self.recent)
        if not frames:
            res.success, res.message = False, "no camera frames received yet"
            return res
        try:
            if req.switch_profile:
                self._not_adapting()
            r = self.engine.recognize(frames, switch=req.switch_profile)
        except (ValueError, OSError) as exc:
            res.success, res.message = False, str(exc)
            return res
        res.success = r.best is not None
        res.best, res.confidence, res.switched = r.best or "", float(r.confidence), bool(r.switched)
        res.message = ("no saved profile to compare with" if r.best is None else
                       f"best {r.best} (confidence {r.confidence:.2f}, similarity {r.similarity:.3f}"
                       f"{', loaded' if r.switched else ''}) from {len(frames)} frames")
        return res

    def auto_recognize(self) -> None:
        """Timer: recognise the environment and load its profile when confident (auto_recognize)."""
        if not self.p["auto_recognize"] or not self.recent or self.adapting is not None:
            return
        try:
            r = self.engine.recognize(list(self.recent), switch=True)
        except (ValueError, OSError) as exc:
            self.warn("recognize", f"auto-recognition: {exc}")
            return
        if r.switched:
            self.get_logger().info(f"recognised {r.best} (confidence {r.confidence:.2f}): profile loaded")
