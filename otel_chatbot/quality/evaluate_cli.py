"""The ``otel-chatbot evaluate`` subcommand: its options and its run. Imported by cli.py at start, so
only the standard library is imported at module level (``--help`` must work without the server extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from otel_chatbot.processor.config import ConfigError, ProcessorConfig

_EXAMPLES = """\
examples:
  OPENAI_API_KEY=sk-… otel-chatbot evaluate --since 24h --sample 0.1
  otel-chatbot evaluate --base-url http://localhost:11434/v1 --model llama3.1 --service support --since 7d
  otel-chatbot evaluate --level session --since 2025-01-01T00:00:00Z --until 2025-01-08 --format json

Scores go to the evaluations (or session_evaluations) table, where Grafana's SQL panels read them.
The chatbot_evaluation_score histogram on /metrics comes only from the judge running inside
`otel-chatbot serve` (--judge-sample-rate): the processor does not see runs of this command.
A turn is judged once per evaluator and judge version: rerunning skips what is already scored, and the
same --sample rate picks the same turns again. The key comes from OTEL_CHATBOT_JUDGE_API_KEY or
OPENAI_API_KEY (an endpoint given with --base-url may need none).
"""


def _when(text: str) -> datetime:
    from otel_chatbot.quality.selection import parse_when

    try:
        return parse_when(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> Any:
    from otel_chatbot.quality.selection import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    from otel_chatbot.quality.selection import parse_rate

    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value
    return parse


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score from 0 to 10, got {text!r}") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"expected a score from 0 to 10, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected a number of seconds in (0, 3600], got {text!r}")
    return value


def add_parser(commands: Any, add_database: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``evaluate`` on the subparsers ``commands`` (``add_database``: the shared DB options)."""
    p = commands.add_parser(
        "evaluate", help="score stored turns with an LLM judge", epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score stored chat turns 0-10 on accuracy, relevance and clarity, plus groundedness "
                    "against the retrieved documents when the trace has retrieval spans (low groundedness "
                    "flags the turn hallucinated, source judge); or whole conversations (--level session) on "
                    "goal completion, coherence and frustration. Any OpenAI-compatible endpoint.")
    add_database(p)
    p.add_argument("--level", choices=("turn", "session"), default="turn",
                   help="judge single turns or whole conversations (default turn)")
    p.add_argument("--since", type=_when, default=None, metavar="WHEN",
                   help="turns started at or after WHEN: a duration back from now (30m, 24h, 7d) or an ISO "
                        "timestamp (default 24h)")
    p.add_argument("--until", type=_when, default=None, metavar="WHEN", help="turns started before WHEN")
    p.add_argument("--service", metavar="NAME", help="only this service")
    p.add_argument("--source", metavar="CHANNEL", help="only this channel (website, whatsapp, …)")
    p.add_argument("--sample", type=_rate, default=1.0, metavar="FRACTION",
                   help="judge this fraction, chosen by a hash of the id (the same turns on every run; "
                        "default 1)")
    p.add_argument("--limit", type=_bounded_int(1, 10_000_000), default=None, metavar="N",
                   help="judge at most N items in this run (oldest first)")
    p.add_argument("--concurrency", type=_bounded_int(1, 64), default=4, metavar="N",
                   help="judge calls in flight at once (default 4)")
    p.add_argument("--base-url", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (default: judge_base_url "
                        "setting, else api.openai.com)")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="judge model (default: judge_model setting, gpt-4o-mini)")
    p.add_argument("--evaluator", default="llm-judge", metavar="NAME",
                   help="name stored with the scores; a second judge under another name scores again "
                        "(default llm-judge)")
    p.add_argument("--groundedness-threshold", type=_score, default=None, metavar="SCORE",
                   help="groundedness below this flags the turn hallucinated (default: "
                        "judge_groundedness_threshold setting, 5)")
    p.add_argument("--idle", type=_duration, default=None, metavar="DURATION",
                   help="--level session: judge a conversation once it has been quiet this long "
                        "(default 30m)")
    p.add_argument("--response-format", choices=("json_schema", "json_object"), default="json_schema",
                   help="structured output mode the endpoint supports (default json_schema)")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="per judge call (default 60)")
    p.add_argument("--max-retries", type=_bounded_int(0, 20), default=4, metavar="N",
                   help="retries on 429/5xx/timeouts, waiting Retry-After or backing off (default 4)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="summary format")
    p.add_argument("--progress", action="store_true",
                   help="print progress on stderr even when it is not a terminal")


def run(args: argparse.Namespace, config: ProcessorConfig, database_url: Any) -> int:
    """Run ``evaluate``; ``database_url(config)`` is cli.py's context manager yielding the URL."""
    from otel_chatbot.processor.pricing import PriceTable
    from otel_chatbot.quality.evaluate import EvaluateOptions, evaluate
    from otel_chatbot.quality.judge import Judge
    from otel_chatbot.quality.llm import JudgeClient, JudgeUnavailable, RetryPolicy
    from otel_chatbot.quality.report import format_json, format_table
    from otel_chatbot.quality.selection import parse_duration
    from otel_chatbot.store.evaluations import TurnFilter

    since = args.since if args.since is not None else datetime.now(UTC) - parse_duration("24h")
    if args.until is not None and args.until <= since:
        raise ConfigError(f"until: must be later than --since ({since.isoformat(timespec='seconds')}; "
                          "the default is 24h ago)")
    if not args.evaluator.strip():
        raise ConfigError("evaluator: must be non-empty")
    base_url = args.base_url if args.base_url is not None else config.judge_base_url
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url: expected an http(s):// URL, got {base_url!r}")
    options = EvaluateOptions(
        level=args.level, where=TurnFilter(since, args.until, args.service, args.source),
        sample=args.sample, concurrency=args.concurrency, limit=args.limit,
        **({"session_idle": args.idle} if args.idle is not None else {}))
    try:
        prices = PriceTable.load(config.prices_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"prices_file: {exc}") from None
    try:
        client = JudgeClient(args.model or config.judge_model, base_url=base_url, timeout_s=args.timeout,
                             retry=RetryPolicy(max_retries=args.max_retries),
                             response_format=args.response_format)
    except JudgeUnavailable as exc:
        raise ConfigError(str(exc)) from None
    threshold = (args.groundedness_threshold if args.groundedness_threshold is not None
                 else config.judge_groundedness_threshold)
    judge = Judge(client, prices, evaluator=args.evaluator.strip(), groundedness_threshold=threshold)
    progress = _progress_printer() if args.progress or sys.stderr.isatty() else None
    try:
        with database_url(config) as url:
            summary = evaluate(url, judge, options, progress)
    except JudgeUnavailable as exc:
        print(f"otel-chatbot evaluate: error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
        if progress is not None and sys.stderr.isatty():
            print(file=sys.stderr, flush=True)  # end the overwritten progress line
    print(format_json(summary) if args.format == "json" else format_table(summary))
    return 0


def _progress_printer() -> Callable[[int, int], None]:
    """Overwrites one line on a terminal; elsewhere prints a line at most every 2 s and at the end."""
    terminal = sys.stderr.isatty()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if terminal:
            print(f"\rjudged {done}/{total}", end="", file=sys.stderr, flush=True)
        elif done == total or now - last[0] >= 2:
            last[0] = now
            print(f"judged {done}/{total}", file=sys.stderr, flush=True)
    return show
