"""Parsing in worker processes, for the CLI pipeline and the chat uploads alike: one policy, one set of messages.

A parser that crashes, runs past its time or asks for more memory than allowed fails its own file only, with a French
reason naming the file; the caller (a batch ingestion, the chat server) carries on. The policy:

- files are parsed in ``workers`` spawned processes, a few files ahead, and come back in the order given;
- a file still parsing after ``timeout_s`` seconds is interrupted (its worker is killed);
- a parse may take ``memory_mb`` beyond what its worker holds once the file's parser is loaded (``RLIMIT_DATA``, on
  Linux): past that, it fails with « mémoire insuffisante » instead of the system killing a process, maybe the
  caller;
- after a crash, a timeout or a lack of memory, the workers are replaced and the files queued behind are parsed
  again (with several workers, the file at the head of the queue is parsed again alone before being blamed);
- a worker is replaced after ``files_per_worker`` files: parsers keep memory they never give back.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from index.documents import ParsedDocument
from ingest.parse import ParseError, ParseOptions, load_parser, parse_file, parse_worker_init

logger = logging.getLogger(__name__)


MEMORY_MB = 4096  # what one parse may add to its worker's memory (the parsers themselves are not counted)


@dataclass(frozen=True, slots=True)
class IsolationPolicy:
    timeout_s: float = 300
    workers: int = 1
    memory_mb: float | None = MEMORY_MB
    files_per_worker: int = 200


@dataclass(frozen=True, slots=True)
class _OutOfMemory:
    """What a worker answers when a parse ran out of its memory budget (the worker is then replaced)."""

    message: str


def timeout_message(path: Path | str, timeout_s: float) -> str:
    return f"{path} : analyse interrompue après {timeout_s:g} s (fichier trop complexe ?)"


def crash_message(path: Path | str) -> str:
    return f"{path} : le lecteur de fichiers s'est arrêté brutalement sur ce fichier (fichier corrompu ?)"


def memory_message(path: Path | str, memory_mb: float | None) -> str:
    limit = f" (limite de {memory_mb:g} Mo par analyse dépassée)" if memory_mb else ""
    return f"{path} : analyse abandonnée, mémoire insuffisante{limit} ; fichier trop lourd ou piégé ?"


_SYSTEM_LIMIT: list[int] = []  # the worker's own limit, put back after each parse


def _limit_memory(memory_mb: float | None) -> None:
    """Let this process take ``memory_mb`` more than it holds now, and no more (``None``: the system's limit)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if not _SYSTEM_LIMIT:
            _SYSTEM_LIMIT.append(soft)
        if not memory_mb:
            resource.setrlimit(resource.RLIMIT_DATA, (_SYSTEM_LIMIT[0], hard))
            return
        with open("/proc/self/status", encoding="ascii") as status:
            data_kb = next(int(line.split()[1]) for line in status if line.startswith("VmData:"))
        limit = data_kb * 1024 + int(memory_mb * 2**20)
        if _SYSTEM_LIMIT[0] != resource.RLIM_INFINITY:
            limit = min(limit, _SYSTEM_LIMIT[0])
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux: timeouts still apply
        logger.debug("no memory limit for parsing workers on this system", exc_info=True)


def _parse_in_worker(path: str, options: ParseOptions, memory_mb: float | None) -> ParsedDocument | str | _OutOfMemory:
    """Runs in a worker: the parsed document, the French reason it cannot be parsed, or a lack of memory."""
    try:
        load_parser(Path(path))
        _limit_memory(memory_mb)
        return parse_file(Path(path), options)
    except ParseError as exc:
        if isinstance(exc.__cause__, MemoryError):
            return _OutOfMemory(memory_message(path, memory_mb))
        return str(exc)
    except MemoryError:
        return _OutOfMemory(memory_message(path, memory_mb))
    finally:
        _limit_memory(None)  # sending the result back is not the parse


class _Pool:
    """A process pool that counts the files it was given and can be killed at once."""

    def __init__(self, policy: IsolationPolicy) -> None:
        self.policy = policy
        self.given = 0
        self.executor = cf.ProcessPoolExecutor(
            max_workers=max(policy.workers, 1), mp_context=multiprocessing.get_context("spawn"),
            initializer=parse_worker_init,
        )

    @property
    def worn(self) -> bool:
        return self.given >= self.policy.files_per_worker * max(self.policy.workers, 1)

    def submit(self, path: Path, options: ParseOptions) -> cf.Future:
        self.given += 1
        return self.executor.submit(_parse_in_worker, str(path), options, self.policy.memory_mb)

    def kill(self) -> None:
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            try:
                process.kill()
            except (OSError, AttributeError):
                pass
        self.close()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _outcome(path: Path, future: cf.Future, policy: IsolationPolicy) -> tuple[ParsedDocument | str, str]:
    """(parsed document or French reason, why the workers must be replaced: "", "timeout", "crash" or "memory")."""
    try:
        result = future.result(timeout=policy.timeout_s)
    except cf.TimeoutError:
        return timeout_message(path, policy.timeout_s), "timeout"
    except cf.process.BrokenProcessPool:
        return crash_message(path), "crash"
    except MemoryError:
        return memory_message(path, policy.memory_mb), "memory"
    except Exception as exc:  # pickling problems and the like
        return f"{path} : analyse impossible ({type(exc).__name__} : {exc})", "crash"
    if isinstance(result, _OutOfMemory):
        return result.message, "memory"
    return result, ""


def parse_isolated(paths: Sequence[Path], options: ParseOptions, policy: IsolationPolicy = IsolationPolicy()
                   ) -> Iterator[tuple[Path, ParsedDocument | str]]:
    """Parse ``paths`` in worker processes, yielding ``(path, parsed document or French reason)`` in order."""
    ahead = 8 * max(policy.workers, 1)  # deep enough that a slow file (OCR) does not leave the other workers idle
    pending = deque(Path(p) for p in paths)
    queue: deque[tuple[Path, cf.Future]] = deque()
    pool = _Pool(policy)
    try:
        while pending or queue:
            if pool.worn and not queue:
                pool.close()
                pool = _Pool(policy)
            while pending and len(queue) < ahead and not pool.worn:
                path = pending.popleft()
                queue.append((path, pool.submit(path, options)))
            path, future = queue.popleft()
            outcome, broken = _outcome(path, future, policy)
            if not broken:
                yield path, outcome
                continue
            pool.kill()  # the files queued behind are parsed again by fresh workers
            pending.extendleft(reversed([p for p, _ in queue]))
            queue.clear()
            if broken == "crash" and policy.workers > 1:  # maybe another file's crash: parse it again alone
                alone = _Pool(IsolationPolicy(policy.timeout_s, 1, policy.memory_mb, 1))
                outcome, broken = _outcome(path, alone.submit(path, options), policy)
                if broken:
                    alone.kill()
                else:
                    alone.close()
            pool = _Pool(policy)
            yield path, outcome
    finally:
        pool.close()


def parse_one(path: Path, options: ParseOptions, policy: IsolationPolicy = IsolationPolicy()) -> ParsedDocument | str:
    """Parse one file in a worker process of its own: the parsed document, or the French reason it failed."""
    outcomes = parse_isolated([path], options, IsolationPolicy(policy.timeout_s, 1, policy.memory_mb, 1))
    try:
        return next(outcomes)[1]
    finally:
        outcomes.close()  # the worker goes now, not when the generator is collected
