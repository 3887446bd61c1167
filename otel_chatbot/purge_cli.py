"""``otel-chatbot purge``: retention by whole days (--older-than) or erasure of one end user (--user-id)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from otel_chatbot.processor.config import ConfigError, ProcessorConfig

_EXAMPLES = "examples:\n  otel-chatbot purge --older-than 30\n  otel-chatbot purge --user-id u-4821\n"


def add_parser(commands: Any, add_database: Callable[[argparse.ArgumentParser], None],
               formatter: type[argparse.HelpFormatter]) -> None:
    purge = commands.add_parser(
        "purge", help="drop data older than N days, or every row of one user", formatter_class=formatter,
        description="Retention: drop whole daily partitions of spans and chat_turns older than --older-than "
                    "days (fast, no table bloat); prints the dropped partitions. Erasure: --user-id "
                    "deletes every row of that end user (turns, their traces' spans, feedback, "
                    "evaluations, reviews, outcomes, sessions only they had) and prints counts per table.",
        epilog=_EXAMPLES)
    add_database(purge)
    what = purge.add_mutually_exclusive_group(required=True)
    what.add_argument("--older-than", type=int, metavar="DAYS", help="keep this many days (>= 1)")
    what.add_argument("--user-id", metavar="ID", help="delete every stored row of this end user")


def run(args: argparse.Namespace, config: ProcessorConfig,
        database_url: Callable[[ProcessorConfig], AbstractContextManager[str]]) -> int:
    if args.user_id is not None:
        return _erase(config, args.user_id, database_url)
    return _purge(config, args.older_than, database_url)


def _purge(config: ProcessorConfig, days: int,
           database_url: Callable[[ProcessorConfig], AbstractContextManager[str]]) -> int:
    if days < 1:
        raise ConfigError(f"older_than: expected a number of days >= 1, got {days}")
    from otel_chatbot.store.retention import purge_older_than

    with database_url(config) as url:
        dropped = purge_older_than(url, days)
    for name in dropped:
        print(f"dropped {name}")
    print(f"{len(dropped)} partition(s) older than {days} day(s) dropped")
    return 0


def _erase(config: ProcessorConfig, user_id: str,
           database_url: Callable[[ProcessorConfig], AbstractContextManager[str]]) -> int:
    if not user_id.strip():
        raise ConfigError("user_id: must be non-empty")
    from otel_chatbot.store.erasure import erase_user

    with database_url(config) as url:
        counts = erase_user(url, user_id)
    for table, count in counts.items():
        print(f"{table}: {count}")
    print(f"{sum(counts.values())} row(s) of user {user_id!r} deleted or scrubbed")
    return 0
