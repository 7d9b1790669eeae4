"""Users' traffic for ``bench/cluster.py``, posted through the load balancer as a
Telegram webhook would post it, and the accounting of what came back.

Every user writes in a group chat of their own, so each reply names the command it
answers (``reply_parameters``) and is counted per update: delivered, duplicated, its
latency (update posted -> sendMessage received by the fake Bot API). Every prime
carries a token made of letters the tiny model knows, so the requests table says which
updates were logged. Steady users stay inside the per-user rate limit; flooders send a
burst far over it, and the texts they got are checked against what one token bucket
shared by all replicas allows.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass

import aiohttp

LETTERS = "abcdeghilmnorstuwy"  # all in the tiny corpus: the prime keeps them verbatim


def token(n: int) -> str:
    """A 4-letter name for update ``n`` (18**4 names)."""
    out = ""
    for _ in range(4):
        n, digit = divmod(n, len(LETTERS))
        out += LETTERS[digit]
    return out


@dataclass
class Sent:
    kind: str  # "user", "flood" or "admin"
    user: int
    chat: int
    message_id: int
    token: str
    posted_at: float  # time.perf_counter(), as the fake Bot API stamps its calls


class Traffic:
    """Posts updates made by the fake Bot API to ``front`` until each is accepted."""

    def __init__(self, server, front: str, secret: str):
        self.server, self.front, self.secret = server, front, secret
        self.sent: list[Sent] = []
        self.posts = 0
        self.unaccepted = 0
        self._tasks: set[asyncio.Task] = set()
        self._n = 0

    def send(self, http: aiohttp.ClientSession, kind: str, user: int, text: str) -> None:
        chat = -(1_000_000 + user)  # a group of the user's own: replies name the command
        tok = token(self._n)
        self._n += 1
        body = f"{text} the {tok}" if kind != "admin" else text
        self.server.message(chat, user, body, chat_type="group")
        update = self.server.updates[-1]
        self.sent.append(Sent(kind, user, chat, update["message"]["message_id"], tok,
                              time.perf_counter()))
        task = asyncio.create_task(self._post(http, update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, http: aiohttp.ClientSession, update: dict) -> None:
        """As Telegram does: post again until the webhook answers 200 (for a while)."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret}
        for _ in range(600):
            self.posts += 1
            try:
                async with http.post(self.front, json=update, headers=headers) as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        self.unaccepted += 1

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def steady(self, http, user: int, seconds: float, interval: float) -> None:
        """One request every ``interval`` seconds (inside the rate limit) until the end."""
        start = time.monotonic()
        await asyncio.sleep(random.uniform(0, interval))
        while time.monotonic() - start < seconds:
            self.send(http, "user", user, "/tiny")
            await asyncio.sleep(interval)

    async def flood(self, http, user: int, at: float, count: int) -> None:
        """``count`` requests 50 ms apart, ``at`` seconds from now."""
        await asyncio.sleep(at)
        for _ in range(count):
            self.send(http, "flood", user, "/tiny")
            await asyncio.sleep(0.05)

    async def admin(self, http, user: int, seconds: float, every: float) -> None:
        """An admin asking for a retrain every ``every`` seconds (most are answered
        "already queued or running")."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            self.send(http, "admin", user, "/retrain tiny")
            await asyncio.sleep(every)

    def waiting(self) -> int:
        """Updates of steady users and admins with no reply yet."""
        answered = set(self.replies())
        return sum(1 for s in self.sent if s.kind != "flood" and s.message_id not in answered)

    def replies(self) -> dict[int, list]:
        """Command message id -> the sendMessage calls answering it."""
        found: dict[int, list] = defaultdict(list)
        for call in self.server.calls:
            ref = call.params.get("reply_parameters") if call.method == "sendMessage" \
                else None
            if isinstance(ref, dict) and "message_id" in ref:
                found[int(ref["message_id"])].append(call)
        return found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def account(traffic: Traffic, burst: float, per_minute: float) -> dict:
    """Replies expected / delivered / duplicated, latency, and rate-limit violations."""
    replies = traffic.replies()
    expected = [s for s in traffic.sent if s.kind != "flood"]
    answered = [s for s in expected if replies.get(s.message_id)]
    latencies = [(replies[s.message_id][0].at - s.posted_at) * 1000 for s in answered
                 if s.kind == "user"]
    texts: dict[int, list[float]] = defaultdict(list)  # user -> when each text arrived
    first: dict[int, float] = {}
    for s in traffic.sent:
        if s.kind == "admin":
            continue  # admins are exempt from the limit
        first[s.user] = min(first.get(s.user, s.posted_at), s.posted_at)
        texts[s.user] += [c.at for c in replies.get(s.message_id, [])
                          if "reply_markup" in c.params]  # a text carries rating buttons
    violations = 0
    for user, times in texts.items():
        if times:  # one bucket starting full admits at most burst + rate x the window
            allowed = burst + per_minute * (max(times) - first[user]) / 60
            violations += max(0, len(times) - math.floor(allowed + 1e-9))
    flooded = [s for s in traffic.sent if s.kind == "flood"]
    steady = [s for s in traffic.sent if s.kind == "user"]
    return {
        "replies_expected": len(expected),
        "replies_delivered": len(answered),
        "replies_duplicated": sum(max(0, len(replies.get(s.message_id, [])) - 1)
                                  for s in traffic.sent),
        "rate_limit_violations": violations,
        # Steady users' requests answered with a generated text (not an error or "busy").
        "steady_requests": len(steady),
        "steady_texts": sum(any("reply_markup" in c.params for c in
                                replies.get(s.message_id, [])) for s in steady),
        "flood": {"requests": len(flooded), "users": len({s.user for s in flooded}),
                  "texts": sum(len(texts[u]) for u in {s.user for s in flooded})},
        "posts": traffic.posts, "unaccepted_posts": traffic.unaccepted,
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
    }
