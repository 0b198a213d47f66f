"""``Advisor``: OpenAI Chat Completions behind a timeout, retries, a daily token budget, a
prompt-hash cache, a secret guard and a deterministic fallback. Advisory only.

One path for the three calls (``_ask``):

1. no API key                 -> fallback (no HTTP call; ``OPENAI_API_KEY`` is *not* read)
2. guard finds an account id / key in the outgoing messages -> fallback, nothing sent
3. cache hit (sha256 of model, messages, response format, max tokens) -> the cached answer
4. today's tokens >= budget   -> fallback, no call
5. the call (the ``openai`` client's own ``timeout`` and ``max_retries``: it retries timeouts,
   connection errors, 408/409/429/5xx with exponential backoff or the server's Retry-After)
6. usage.total_tokens is added to today's count (also for answers we then reject)
7. the answer is validated; only a valid answer is cached and returned

Every failure maps to a ``FallbackReason`` plus a detail text built by us (status code, error
code, type names): server error messages are never logged or returned, since OpenAI's 401 text
echoes part of the key. The key lives in a ``_Secret`` whose repr is masked.

The budget is the sum over one New York calendar day (from the injected ``now``), kept in memory
and mirrored in the cache under ``{namespace}:tokens:{YYYY-MM-DD}`` so several runs on one host
(or on several hosts with Redis) share it. The read-add-write is not atomic across processes; two
runs answering at the same instant can each add to the same starting value (the budget is a cost
guard, not an exact meter).

``openai`` is imported on the first real call (it takes seconds to import), so the fallback path
and ``import adapters.advisor`` stay cheap; nothing connects at import or construction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from adapters.advisor import render
from adapters.advisor.guard import find_sensitive, redact
from adapters.advisor.models import (
    Brief,
    BriefContext,
    DaySummary,
    EntryContext,
    EntryReview,
    FallbackReason,
    Narrative,
    Source,
)
from adapters.advisor.review import REVIEW_RESPONSE_FORMAT, AnswerRejected, Verdict, judge
from adapters.cache import InProcessCache
from core.models import require_aware

if TYPE_CHECKING:
    import openai

    from adapters.ports import Cache

# The exchange's zone (same as core.calendar.NY, which would pull in exchange_calendars and
# pandas just to name a zone): the budget day is the New York calendar day.
NY = ZoneInfo("America/New_York")

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT_SECONDS = 20.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_DAILY_TOKEN_BUDGET = 200_000
DEFAULT_CACHE_TTL_SECONDS = 24 * 3600
DEFAULT_MAX_COMPLETION_TOKENS = 1_000
BUDGET_TTL_SECONDS = 2 * 24 * 3600  # a day's count outlives the day, then expires

_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_RETRIED_STATUSES = frozenset({408, 409, 429})

FALLBACK_OF = {
    "brief": "deterministic brief",
    "review": "accept unchanged",
    "narrative": "deterministic narrative",
}


class _Secret:
    """Holds the key; its repr/str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('**********')"

    __str__ = __repr__


class _Invalid(Exception):
    """The model answered, but not with something we may use (message is safe to log)."""


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[T]):
    value: T | None
    tokens: int = 0
    cached: bool = False
    reason: FallbackReason | None = None
    detail: str = ""


class Advisor:
    """The AI advisor (``premarket_brief``, ``review_entry``, ``eod_narrative``).

    Without ``api_key`` every call returns the deterministic fallback, so the same object serves
    development mode. Calls never raise for advisor trouble (network, budget, bad answers): they
    return a result whose ``source`` is ``Source.FALLBACK`` with a ``fallback_reason``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        daily_token_budget: int = DEFAULT_DAILY_TOKEN_BUDGET,
        cache: Cache | None = None,
        cache_ttl_seconds: int = DEFAULT_CACHE_TTL_SECONDS,
        now: Callable[[], datetime] | None = None,
        max_completion_tokens: int | None = DEFAULT_MAX_COMPLETION_TOKENS,
        namespace: str = "advisor",
    ) -> None:
        if not model:
            raise ValueError("model must not be empty")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if daily_token_budget < 0:
            raise ValueError(f"daily_token_budget must be >= 0, got {daily_token_budget}")
        if cache_ttl_seconds <= 0:
            raise ValueError(f"cache_ttl_seconds must be positive, got {cache_ttl_seconds}")
        key = (api_key or "").strip()
        self._key = _Secret(key) if key else None
        self.model = model
        self.base_url = base_url
        self.timeout_seconds = float(timeout_seconds)
        self.max_retries = max_retries
        self.daily_token_budget = daily_token_budget
        self.cache_ttl_seconds = cache_ttl_seconds
        self.max_completion_tokens = max_completion_tokens
        self.namespace = namespace
        self._cache: Cache = cache if cache is not None else InProcessCache()
        self._now = now if now is not None else _wall_clock
        self._spent: dict[date, int] = {}
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None

    def __repr__(self) -> str:
        return (
            f"Advisor(model={self.model!r}, base_url={self.base_url!r}, "
            f"key={'set' if self._key else 'none'}, budget={self.daily_token_budget})"
        )

    @property
    def enabled(self) -> bool:
        """True when a key is set (calls may reach the model)."""
        return self._key is not None

    # ---- the three calls --------------------------------------------------------------------

    def premarket_brief(self, context: BriefContext) -> Brief:
        outcome = self._ask("brief", render.brief_messages(context), None, _text_answer)
        if outcome.value is None:
            return Brief(
                text=render.fallback_brief(context),
                source=Source.FALLBACK,
                fallback_reason=outcome.reason,
                detail=outcome.detail,
                tokens=outcome.tokens,
            )
        return Brief(
            text=outcome.value, source=Source.MODEL, cached=outcome.cached, tokens=outcome.tokens
        )

    def review_entry(self, context: EntryContext) -> EntryReview:
        original = context.confidence

        def parse(raw: str) -> Verdict:
            try:
                return judge(raw, original)
            except AnswerRejected as error:
                raise _Invalid(str(error)) from None

        outcome = self._ask(
            "review", render.review_messages(context), REVIEW_RESPONSE_FORMAT, parse
        )
        verdict = outcome.value
        if verdict is None:
            reason = outcome.reason or FallbackReason.UNEXPECTED
            return EntryReview.accept_unchanged(
                original, fallback_reason=reason, detail=outcome.detail, tokens=outcome.tokens
            )
        return EntryReview(
            decision=verdict.decision,
            original_confidence=original,
            confidence=verdict.confidence,
            reason=redact(verdict.reason),
            source=Source.MODEL,
            cached=outcome.cached,
            tokens=outcome.tokens,
        )

    def eod_narrative(self, context: DaySummary) -> Narrative:
        outcome = self._ask("narrative", render.narrative_messages(context), None, _text_answer)
        if outcome.value is None:
            return Narrative(
                text=render.fallback_narrative(context),
                source=Source.FALLBACK,
                fallback_reason=outcome.reason,
                detail=outcome.detail,
                tokens=outcome.tokens,
            )
        return Narrative(
            text=outcome.value, source=Source.MODEL, cached=outcome.cached, tokens=outcome.tokens
        )

    # ---- budget -----------------------------------------------------------------------------

    def today(self) -> date:
        now = self._now()
        require_aware(now, "advisor clock")
        return now.astimezone(NY).date()

    def tokens_spent(self, day: date | None = None) -> int:
        """Tokens counted for ``day`` (default today) by this advisor or, via the cache, others."""
        day = day if day is not None else self.today()
        with self._lock:
            return self._read_spent(day)

    def _budget_key(self, day: date) -> str:
        return f"{self.namespace}:tokens:{day.isoformat()}"

    def _read_spent(self, day: date) -> int:
        local = self._spent.get(day, 0)
        try:
            raw = self._cache.get(self._budget_key(day))
            shared = int(raw.decode()) if raw else 0
        except Exception as error:  # the cache is never the truth; keep the local count
            log.warning("advisor: token budget not read from the cache (%s)", type(error).__name__)
            shared = 0
        return max(local, shared)

    def _add_spent(self, day: date, tokens: int) -> int:
        with self._lock:
            total = self._read_spent(day) + tokens
            self._spent[day] = total
            try:
                self._cache.set(self._budget_key(day), str(total).encode(), BUDGET_TTL_SECONDS)
            except Exception as error:
                log.warning(
                    "advisor: token budget not written to the cache (%s)", type(error).__name__
                )
            # forget old days kept in memory
            for old in [d for d in self._spent if d < day - timedelta(days=2)]:
                del self._spent[old]
        return total

    # ---- the common path --------------------------------------------------------------------

    def _cache_key(
        self, messages: Sequence[render.Message], response_format: dict[str, Any] | None
    ) -> str:
        material = json.dumps(
            {
                "model": self.model,
                "messages": list(messages),
                "response_format": response_format,
                "max_completion_tokens": self.max_completion_tokens,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return f"{self.namespace}:answer:{hashlib.sha256(material.encode()).hexdigest()}"

    def _ask(
        self,
        kind: str,
        messages: list[render.Message],
        response_format: dict[str, Any] | None,
        parse: Callable[[str], T],
    ) -> _Outcome[T]:
        try:
            return self._ask_unguarded(kind, messages, response_format, parse)
        except Exception as error:  # advisory: never break the caller over the advisor
            return self._fallback(kind, FallbackReason.UNEXPECTED, type(error).__name__)

    def _fallback(
        self, kind: str, reason: FallbackReason, detail: str = "", tokens: int = 0
    ) -> _Outcome[Any]:
        detail = self._safe(detail)
        level = logging.INFO if reason is FallbackReason.NO_API_KEY else logging.WARNING
        log.log(
            level,
            "advisor %s: fallback (%s) -> %s%s; tokens %d",
            kind,
            reason.value,
            FALLBACK_OF.get(kind, "fallback"),
            f" [{detail}]" if detail else "",
            tokens,
        )
        return _Outcome(None, tokens=tokens, reason=reason, detail=detail)

    def _safe(self, text: str) -> str:
        return redact(text, [self._key.reveal()] if self._key else [])

    def _ask_unguarded(
        self,
        kind: str,
        messages: list[render.Message],
        response_format: dict[str, Any] | None,
        parse: Callable[[str], T],
    ) -> _Outcome[T]:
        if self._key is None:
            return self._fallback(kind, FallbackReason.NO_API_KEY)

        outgoing = [m["content"] for m in messages]
        if response_format is not None:
            outgoing.append(json.dumps(response_format))
        found = find_sensitive(outgoing, [self._key.reveal()])
        if found:
            return self._fallback(
                kind, FallbackReason.SENSITIVE_PROMPT, "matched: " + ", ".join(found)
            )

        cache_key = self._cache_key(messages, response_format)
        hit = self._cached(kind, cache_key, parse)
        if hit is not None:
            log.info("advisor %s: cache hit, no call", kind)
            return _Outcome(hit, cached=True)

        day = self.today()
        spent = self.tokens_spent(day)
        if spent >= self.daily_token_budget:
            return self._fallback(
                kind,
                FallbackReason.TOKEN_BUDGET,
                f"{spent}/{self.daily_token_budget} tokens on {day.isoformat()}",
            )

        failure, content, tokens = self._call(messages, response_format)
        total = self._add_spent(day, tokens) if tokens else spent
        if failure is not None:
            reason, detail = failure
            return self._fallback(kind, reason, detail, tokens)
        try:
            value = parse(content)
        except _Invalid as problem:
            log.warning(
                "advisor %s: model answer discarded (%s); using the fallback: %s",
                kind,
                self._safe(str(problem)),
                FALLBACK_OF.get(kind, "fallback"),
            )
            return self._fallback(kind, FallbackReason.INVALID_ANSWER, str(problem), tokens)
        log.info(
            "advisor %s: model answer, %d tokens (%d/%d today), cache miss",
            kind,
            tokens,
            total,
            self.daily_token_budget,
        )
        self._store(cache_key, content)
        if total >= self.daily_token_budget:
            log.warning(
                "advisor: daily token budget spent (%d/%d); fallback until tomorrow",
                total,
                self.daily_token_budget,
            )
        return _Outcome(value, tokens=tokens)

    def _cached(self, kind: str, key: str, parse: Callable[[str], T]) -> T | None:
        try:
            raw = self._cache.get(key)
        except Exception as error:
            log.warning("advisor %s: cache not readable (%s)", kind, type(error).__name__)
            return None
        if raw is None:
            return None
        try:
            content = json.loads(raw.decode())["content"]
            return parse(content)
        except (_Invalid, ValueError, KeyError, TypeError):
            log.warning("advisor %s: unusable cache entry ignored", kind)
            return None

    def _store(self, key: str, content: str) -> None:
        value = json.dumps({"model": self.model, "content": content}).encode()
        try:
            self._cache.set(key, value, self.cache_ttl_seconds)
        except Exception as error:
            log.warning("advisor: answer not cached (%s)", type(error).__name__)

    # ---- the HTTP call ----------------------------------------------------------------------

    def _openai(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                import openai

                assert self._key is not None
                self._client = openai.OpenAI(
                    api_key=self._key.reveal(),
                    base_url=self.base_url,
                    timeout=self.timeout_seconds,
                    max_retries=self.max_retries,
                )
            return self._client

    def _call(
        self, messages: list[render.Message], response_format: dict[str, Any] | None
    ) -> tuple[tuple[FallbackReason, str] | None, str, int]:
        """(failure or None, content, total tokens). Never raises for API trouble."""
        import openai

        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format
        if self.max_completion_tokens is not None:
            extra["max_completion_tokens"] = self.max_completion_tokens
        try:
            completion = self._openai().chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                **extra,
            )
        except openai.APITimeoutError:
            return (
                (
                    FallbackReason.TIMEOUT,
                    f"no answer within {self.timeout_seconds:g} s, {self.max_retries} retries",
                ),
                "",
                0,
            )
        except openai.APIStatusError as error:
            return self._status_failure(error), "", 0
        except openai.APIConnectionError as error:
            return (
                (FallbackReason.CONNECTION, f"{type(error).__name__}, {self.max_retries} retries"),
                "",
                0,
            )
        tokens = completion.usage.total_tokens if completion.usage is not None else 0
        if not completion.choices:
            return (FallbackReason.INVALID_ANSWER, "no choices"), "", tokens
        choice = completion.choices[0]
        message = choice.message
        if message.refusal:
            return (FallbackReason.INVALID_ANSWER, "the model refused"), "", tokens
        if choice.finish_reason not in ("stop", "length"):
            return (
                (FallbackReason.INVALID_ANSWER, f"finish reason {choice.finish_reason}"),
                "",
                tokens,
            )
        if choice.finish_reason == "length":
            log.info("advisor: answer cut at max_completion_tokens=%s", self.max_completion_tokens)
        return None, message.content or "", tokens

    def _status_failure(self, error: openai.APIStatusError) -> tuple[FallbackReason, str]:
        status = error.status_code
        code = error.code if error.code and _SAFE_CODE.match(error.code) else ""
        detail = f"HTTP {status}" + (f" {code}" if code else "")
        if status in _RETRIED_STATUSES or status >= 500:
            detail += f" after {self.max_retries} retries"
        if status in (401, 403):
            return FallbackReason.AUTHENTICATION, detail
        if status == 429:
            return FallbackReason.RATE_LIMITED, detail
        if status == 408:
            return FallbackReason.TIMEOUT, detail
        if status >= 500:
            return FallbackReason.SERVER_ERROR, detail
        return FallbackReason.REQUEST_REJECTED, detail

    # ---- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP client if one was created (a later call creates a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Advisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wall_clock() -> datetime:
    return datetime.now(tz=NY)


def _text_answer(raw: str) -> str:
    text = redact(raw.strip())
    if not text:
        raise _Invalid("empty answer")
    return text
