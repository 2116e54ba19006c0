"""Is this answer equal to the gold one? One grader for every task.

Plain numbers on both sides (after ``agent.tasks.answers.normalize_number``: commas, currency,
units, percent signs removed, and a computation over plain numbers such as "12 + 16 = 28 packs"
read as the result it states) are compared here, in the event loop: integers exactly, anything
else with a relative tolerance of 1e-6, so "1/2" equals "0.5". Everything else (LaTeX fractions,
sets, intervals, tuples, expressions) goes to math-verify, gold first, in a process pool: its
timeouts use ``signal.alarm``, which works only in a process's main thread. The pool uses the
"spawn" start method, so a script that grades must guard its entry point with
``if __name__ == "__main__":``.

Left out on purpose: multiple-choice letters and free-text answers get no special handling beyond
what math-verify does, and a worker stuck past the grader's deadline is abandoned, not killed (its
own math-verify timeouts end it within seconds).
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from types import TracebackType

import anyio

from agent.errors import GradingError
from agent.tasks.answers import last_boxed, parse_number

__all__ = ["Grader", "grade_sync", "numbers_equal"]

_REL_TOL = 1e-6


def numbers_equal(answer: Fraction, gold: Fraction) -> bool:
    """Integers must match exactly; otherwise a relative tolerance of 1e-6 applies."""
    if answer == gold:
        return True
    if answer.denominator == 1 and gold.denominator == 1:
        return False
    return math.isclose(answer, gold, rel_tol=_REL_TOL)


def grade_sync(answer: str | None, gold: str) -> bool:
    """Grade in this process, without a pool: for tests and scripts, from the main thread only."""
    quick = _fast_grade(answer, gold)
    if quick is not None or answer is None:
        return bool(quick)
    return _verify_worker(answer, gold)


class Grader:
    """Grades answers against gold answers; math-verify runs in a lazily started process pool.

    Use it as an async context manager, or call ``close()`` when done. A worker that crashes, or a
    comparison that outlives ``timeout_s``, raises GradingError; the next call starts a new pool.
    """

    def __init__(self, *, max_workers: int | None = None, timeout_s: float = 60.0) -> None:
        self._max_workers = max_workers or min(4, os.cpu_count() or 1)
        self._timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None

    async def __aenter__(self) -> Grader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Shut the pool down, waiting for running comparisons (queued ones are cancelled)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def grade(self, answer: str | None, gold: str) -> bool:
        """True when ``answer`` equals ``gold``; a None answer (none was found) is wrong."""
        (result,) = await self.grade_many([(answer, gold)])
        return result

    async def grade_many(self, pairs: Iterable[tuple[str | None, str]]) -> list[bool]:
        """Grade (answer, gold) pairs; the slow ones run concurrently across the pool."""
        pairs = list(pairs)
        results = [_fast_grade(answer, gold) for answer, gold in pairs]
        slow = [
            (i, a, g) for i, ((a, g), r) in enumerate(zip(pairs, results, strict=True)) if r is None and a
        ]
        if not slow:
            return [bool(result) for result in results]
        pool = self._get_pool()
        futures: list[asyncio.Future[bool]] = []
        try:
            for _, answer, gold in slow:
                futures.append(self._submit(pool, answer, gold))
            for (i, answer, gold), future in zip(slow, futures, strict=True):
                results[i] = await self._wait(pool, future, (answer, gold))
        finally:
            _discard(futures)
        return [bool(result) for result in results]

    def _submit(self, pool: ProcessPoolExecutor, answer: str, gold: str) -> asyncio.Future[bool]:
        try:
            return asyncio.get_running_loop().run_in_executor(pool, _verify_worker, answer, gold)
        except BrokenProcessPool as exc:
            self._drop_pool(pool)
            raise GradingError(f"the grading pool is broken (a worker died earlier): {exc}") from exc

    async def _wait(
        self, pool: ProcessPoolExecutor, future: asyncio.Future[bool], pair: tuple[str, str]
    ) -> bool:
        try:
            with anyio.fail_after(self._timeout_s):
                return await future
        except BrokenProcessPool as exc:
            self._drop_pool(pool)
            raise GradingError(f"a grading worker process died while grading {pair!r}: {exc}") from exc
        except TimeoutError as exc:
            self._drop_pool(pool)
            raise GradingError(f"grading {pair!r} took longer than {self._timeout_s} s") from exc
        except Exception as exc:
            raise GradingError(f"math-verify failed on {pair!r}: {exc!r}") from exc

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._max_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        return self._pool

    def _drop_pool(self, pool: ProcessPoolExecutor) -> None:
        """Send no more work to a broken pool or one with a stuck worker; the next call starts anew.

        What the dropped pool is still running finishes (math-verify's own timeouts bound it).
        """
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False)


def _fast_grade(answer: str | None, gold: str) -> bool | None:
    """The verdict when no parser is needed (no answer, or plain numbers), else None."""
    if answer is None or not answer.strip():
        return False
    answer_value, gold_value = parse_number(answer), parse_number(gold)
    if answer_value is None or gold_value is None:
        return None
    return numbers_equal(answer_value, gold_value)


def _discard(futures: list[asyncio.Future[bool]]) -> None:
    """Cancel what is still pending and mark finished failures as seen."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


def _as_latex(answer: str) -> str:
    """``answer`` as a boxed LaTeX expression, the form math-verify extracts most reliably."""
    boxed = last_boxed(answer)
    text = boxed if boxed is not None else answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            text = text[len(left) : -len(right)]
            break
    return "\\boxed{" + text.strip() + "}"


def _init_worker() -> None:
    """Import and warm up math-verify once per worker; keep its timeout warnings off stderr."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _verify_worker("1", "1")


def _verify_worker(answer: str, gold: str) -> bool:
    """Run in a pool process: math-verify's verdict, gold first (verify is not symmetric)."""
    from math_verify import parse, verify

    return bool(verify(parse(_as_latex(gold)), parse(_as_latex(answer))))
