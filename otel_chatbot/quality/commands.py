"""Arguments and runners of ``otel-chatbot failures`` and ``otel-chatbot export``.

cli.py adds the parsers and calls :func:`prepare` (which checks every option before a database is
opened and raises ValueError naming the bad one: cli.py makes that exit 2) and then the returned
runner with the database URL. Only standard-library imports at module level, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Runner = Callable[[str], int]
AddDatabase = Callable[[argparse.ArgumentParser], None]

_FAILURES_EXAMPLES = """\
examples:
  otel-chatbot failures                                   # last 7 days, offline embeddings, table
  otel-chatbot failures --since 24h --service support-bot --format markdown
  OTEL_CHATBOT_EMBEDDINGS_API_KEY=sk-... otel-chatbot failures --since 2026-11-01 --until 2026-11-08 \\
      --embeddings-base-url https://api.openai.com/v1 --embeddings-model text-embedding-3-small --format json

a problem turn: thumbs-down, fallback, hallucinated (app or judge), error, or a judge score below
--score-threshold. The previous window (same length, just before) gives each cluster's trend.
exit status: 0 (also when the window has no problem turns: nothing is stored), 1 when the database or
the embeddings endpoint fails, 2 for bad options.
"""

_EXPORT_EXAMPLES = """\
examples:
  otel-chatbot export --format openai-finetune --rating up --exclude-problems --output train.jsonl \\
      --system-prompt "You are Acme's support assistant."
  otel-chatbot export --format csv --since 7d --output problems.csv     # problem turns for review
  OTEL_CHATBOT_LLM_API_KEY=sk-... otel-chatbot export --format openai-finetune --output train.jsonl \\
      --synthesize 8 --synthetic-output synthetic.jsonl --llm-model gpt-4o-mini

openai-finetune: one line per conversation (its chosen turns in order), a reviewer's corrected reply
replacing the bot's, PII redacted, every line checked against the chat fine-tuning format and kept
within --max-tokens (exact o200k_base counts): a longer conversation is split at turn boundaries into
windows, each with the system prompt and the turns before it as weight-0 context; a turn over the
limit on its own is skipped and counted.
--synthesize N asks the model for N new examples per failure cluster of the latest `failures` run,
grounded in the reviewers' corrections of that cluster; they go to --synthetic-output (same format,
so the files can be concatenated) and their provenance (cluster, seed turns) to FILE.meta.jsonl.
exit status: 0 (also when nothing matched: empty output), 1 when the database or the model fails,
2 for bad options.
"""


def _window_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--since", metavar="TIME", help=f"start of the window: ISO date/time or a span back "
                                                        f"from now like 24h, 7d (default {default})")
    parser.add_argument("--until", metavar="TIME", help="end of the window, same forms (default now)")
    parser.add_argument("--service", action="append", metavar="NAME", help="only this service (repeatable)")
    parser.add_argument("--source", action="append", metavar="NAME",
                        help="only this channel: website, whatsapp, … (repeatable)")
    parser.add_argument("--score-threshold", type=float, default=5.0, metavar="SCORE",
                        help="a judge score (0-10) below this makes a turn a problem (default 5)")


def _reason_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", action="append", metavar="REASON",
                        help="only problem turns with this reason: thumbs_down, fallback, hallucinated, "
                             "low_score or error (repeatable; default all)")


def add_parsers(commands: Any, formatter: type[argparse.HelpFormatter], add_database: AddDatabase) -> None:
    failures = commands.add_parser(
        "failures", help="cluster problem turns into named failure themes", formatter_class=formatter,
        epilog=_FAILURES_EXAMPLES,
        description="Select the window's problem turns, embed their user messages, cluster them and name "
                    "each cluster by its characteristic terms and most central message; print size, share, "
                    "trend against the previous window and example turn ids, and store the run for the "
                    "dashboard. Progress goes to standard error.")
    add_database(failures)
    _window_arguments(failures, "7d")
    _reason_argument(failures)
    failures.add_argument("--format", default="table", metavar="FORMAT",
                          help="table, json or markdown (default table)")
    failures.add_argument("--embedder", metavar="KIND",
                          help="wordllama (offline, default), tfidf (offline, words only) or endpoint "
                               "(default when --embeddings-base-url is set)")
    failures.add_argument("--embeddings-base-url", metavar="URL",
                          default=os.environ.get("OTEL_CHATBOT_EMBEDDINGS_BASE_URL"),
                          help="OpenAI-compatible API base, e.g. https://api.openai.com/v1 "
                               "(env OTEL_CHATBOT_EMBEDDINGS_BASE_URL; key from "
                               "OTEL_CHATBOT_EMBEDDINGS_API_KEY or OPENAI_API_KEY)")
    failures.add_argument("--embeddings-model", metavar="MODEL",
                          default=os.environ.get("OTEL_CHATBOT_EMBEDDINGS_MODEL", "text-embedding-3-small"),
                          help="embeddings model (env OTEL_CHATBOT_EMBEDDINGS_MODEL; default "
                               "text-embedding-3-small)")
    failures.add_argument("--max-clusters", type=int, default=15, metavar="K",
                          help="most clusters tried; k is chosen by silhouette (default 15)")
    failures.add_argument("--examples", type=int, default=5, metavar="N",
                          help="example turn ids per cluster, most central first (default 5)")
    failures.add_argument("--max-turns", type=int, default=50_000, metavar="N",
                          help="cluster at most the latest N problem turns per window (default 50000)")
    failures.add_argument("--seed", type=int, default=0, help="random seed of k-means (default 0)")
    failures.add_argument("--store", action=argparse.BooleanOptionalAction, default=True,
                          help="store the run for the dashboard (default on)")

    export = commands.add_parser(
        "export", help="export fine-tuning JSONL or problem turns for review", formatter_class=formatter,
        epilog=_EXPORT_EXAMPLES,
        description="Write chat fine-tuning JSONL from the window's turns (filtered by rating and problems, "
                    "reviewers' corrections applied), or the problem turns as JSONL/CSV for review. PII is "
                    "redacted in everything written. Progress goes to standard error.")
    add_database(export)
    _window_arguments(export, "30d")
    export.add_argument("--format", required=True, metavar="FORMAT",
                        help="openai-finetune (training data), jsonl or csv (problem turns for review)")
    _reason_argument(export)
    export.add_argument("--output", type=Path, metavar="FILE",
                        help="where to write (default standard output)")
    export.add_argument("--rating", default="any", metavar="RATING",
                        help="openai-finetune: 'up' keeps turns rated up by the user or a reviewer or "
                             "corrected by a reviewer; 'any' (default) keeps all")
    export.add_argument("--exclude-problems", action="store_true",
                        help="openai-finetune: leave out problem turns a reviewer has not corrected")
    export.add_argument("--system-prompt", metavar="TEXT",
                        help="openai-finetune: system message of every line")
    export.add_argument("--max-tokens", type=int, metavar="N",
                        help="openai-finetune: most tokens in one line (default 65536, the training-example "
                             "limit of gpt-4o-mini and gpt-4o; 16385 for gpt-3.5-turbo); a longer "
                             "conversation is split at turn boundaries into windows")
    export.add_argument("--synthesize", type=int, metavar="N",
                        help="openai-finetune: N (1-20) new examples per failure cluster of the latest run")
    export.add_argument("--synthetic-output", type=Path, metavar="FILE",
                        help="where synthetic examples go (required with --synthesize)")
    export.add_argument("--llm-base-url", metavar="URL", default=os.environ.get("OTEL_CHATBOT_LLM_BASE_URL"),
                        help="OpenAI-compatible API base for --synthesize (env OTEL_CHATBOT_LLM_BASE_URL; "
                             "default the OpenAI API; key from OTEL_CHATBOT_LLM_API_KEY or OPENAI_API_KEY)")
    export.add_argument("--llm-model", metavar="MODEL", default=os.environ.get("OTEL_CHATBOT_LLM_MODEL",
                                                                                 "gpt-4o-mini"),
                        help="model for --synthesize (env OTEL_CHATBOT_LLM_MODEL; default gpt-4o-mini)")


def _progress(message: str) -> None:
    print(f"otel-chatbot: {message}", file=sys.stderr, flush=True)


def prepare(args: argparse.Namespace) -> Runner:
    """Check the options of ``args.command``; the runner then does the work against a database URL."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # The HTTP client under openai logs every request at INFO; progress lines say enough.
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return _prepare_failures(args) if args.command == "failures" else _prepare_export(args)


def _window(args: argparse.Namespace, default_days: float) -> Any:
    from otel_chatbot.quality.window import window_from_options

    return window_from_options(args.since, args.until, args.service, args.source, default_days=default_days)


def _reasons(args: argparse.Namespace) -> tuple[str, ...]:
    from otel_chatbot.quality.select import REASONS, problem_condition

    reasons = tuple(dict.fromkeys(args.reason)) if args.reason else REASONS
    problem_condition(reasons)  # names a bad one
    return reasons


def _prepare_failures(args: argparse.Namespace) -> Runner:
    from otel_chatbot.quality.cluster_report import FORMATS
    from otel_chatbot.quality.embed import EMBEDDER_KINDS, EndpointEmbedder, TfidfEmbedder, WordLlamaEmbedder
    from otel_chatbot.quality.failures import FailureOptions

    if args.format not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {args.format!r}")
    kind = args.embedder or ("endpoint" if args.embeddings_base_url else "wordllama")
    if kind not in EMBEDDER_KINDS:
        raise ValueError(f"--embedder: expected one of {', '.join(EMBEDDER_KINDS)}, got {kind!r}")
    if kind == "endpoint" and not args.embeddings_base_url:
        raise ValueError("--embeddings-base-url: required with --embedder endpoint")
    options = FailureOptions(window=_window(args, 7), score_threshold=args.score_threshold,
                             max_clusters=args.max_clusters, examples=args.examples, seed=args.seed,
                             max_turns=args.max_turns, store=args.store, reasons=_reasons(args))
    embedder: Any
    if kind == "endpoint":
        key = os.environ.get("OTEL_CHATBOT_EMBEDDINGS_API_KEY") or os.environ.get("OPENAI_API_KEY")
        embedder = EndpointEmbedder(args.embeddings_base_url, args.embeddings_model, key)
    else:
        embedder = TfidfEmbedder(seed=args.seed) if kind == "tfidf" else WordLlamaEmbedder()

    def run(url: str) -> int:
        import psycopg

        from otel_chatbot.quality.cluster_report import render
        from otel_chatbot.quality.failures import find_failure_clusters

        with psycopg.connect(url, autocommit=True) as conn:
            report = find_failure_clusters(conn, embedder, options, _progress)
        if not report.clusters:
            _progress(f"no problem turns with a user message from {options.window.since:%Y-%m-%d %H:%M} to "
                      f"{options.window.until:%Y-%m-%d %H:%M} UTC; nothing clustered or stored")
        print(render(report, args.format))
        return 0

    return run


def _prepare_export(args: argparse.Namespace) -> Runner:
    from otel_chatbot.quality.export import FORMATS, FinetuneSelection
    from otel_chatbot.quality.synthesize import MAX_VARIATIONS
    from otel_chatbot.quality.tokens import DEFAULT_MAX_TOKENS

    if args.format not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {args.format!r}")
    window = _window(args, 30)
    if args.output is not None and args.output == args.synthetic_output:
        raise ValueError("--synthetic-output: must differ from --output")
    finetune = args.format == "openai-finetune"
    if args.reason and finetune:
        raise ValueError("--reason: only applies to --format jsonl or csv (problem turns)")
    reasons = _reasons(args)
    for option, given in (("--rating", args.rating != "any"), ("--exclude-problems", args.exclude_problems),
                          ("--system-prompt", args.system_prompt is not None),
                          ("--max-tokens", args.max_tokens is not None),
                          ("--synthesize", args.synthesize is not None)):
        if given and not finetune:
            raise ValueError(f"{option}: only applies to --format openai-finetune")
    if args.system_prompt is not None and not args.system_prompt.strip():
        raise ValueError("--system-prompt: expected non-empty text")
    if args.synthesize is not None:
        if not 1 <= args.synthesize <= MAX_VARIATIONS:
            raise ValueError(f"--synthesize: expected 1 to {MAX_VARIATIONS} examples per cluster, "
                             f"got {args.synthesize}")
        if args.synthetic_output is None:
            raise ValueError("--synthetic-output: required with --synthesize (synthetic examples are kept "
                             "apart from real ones)")
    elif args.synthetic_output is not None:
        raise ValueError("--synthetic-output: only applies with --synthesize")
    for option, path in (("--output", args.output), ("--synthetic-output", args.synthetic_output)):
        if path is not None and not path.parent.is_dir():
            raise ValueError(f"{option}: directory {path.parent} does not exist")
    max_tokens = DEFAULT_MAX_TOKENS if args.max_tokens is None else args.max_tokens
    selection = FinetuneSelection(window, rating=args.rating, exclude_problems=args.exclude_problems,
                                  score_threshold=args.score_threshold,
                                  max_tokens=max_tokens) if finetune else None
    if selection is not None and args.system_prompt is not None:
        _check_system_prompt_fits(args.system_prompt, selection.max_tokens)

    def run(url: str) -> int:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            if selection is None:
                return _export_problems(conn, args, window, reasons)
            return _export_finetune(conn, args, selection)

    return run


def _check_system_prompt_fits(system_prompt: str, max_tokens: int) -> None:
    from otel_chatbot.quality.tokens import TOKENS_PER_EXAMPLE, openai_counter

    counter = openai_counter()
    # A turn is two messages of at least one token each besides their framing.
    smallest_turn = counter.message("user", "x") + counter.message("assistant", "x")
    fixed = TOKENS_PER_EXAMPLE + counter.message("system", system_prompt)
    if fixed + smallest_turn > max_tokens:
        raise ValueError(f"--max-tokens: {max_tokens} leaves no room for a turn after the system prompt "
                         f"({fixed} tokens with the line's framing)")


def _open_output(path: Path | None) -> IO[str]:
    return sys.stdout if path is None else path.open("w", encoding="utf-8", newline="")


def _export_problems(conn: Any, args: argparse.Namespace, window: Any, reasons: tuple[str, ...]) -> int:
    from otel_chatbot.quality.export import problem_rows, write_csv, write_jsonl

    rows = problem_rows(conn, window, args.score_threshold, reasons)
    out = _open_output(args.output)
    try:
        count = write_csv(rows, out) if args.format == "csv" else write_jsonl(rows, out)
    finally:
        if out is not sys.stdout:
            out.close()
    _progress(f"wrote {count} problem turns" + ("" if count else " (none in the window)"))
    return 0


def _export_finetune(conn: Any, args: argparse.Namespace, selection: Any) -> int:
    from otel_chatbot.quality.export import finetune_lines, write_jsonl

    lines, counts = finetune_lines(conn, selection, args.system_prompt)
    _progress(f"{counts.turns_seen} turns in the window, {counts.turns_exported} chosen ({counts.corrected} "
              f"with a reviewer's corrected reply, {counts.skipped_empty} skipped for an empty message or "
              f"reply), {counts.lines} lines")
    _progress(f"token limit {selection.max_tokens} per line (counted as {counts.counter}): "
              f"{counts.conversations_split} conversations split into windows, {counts.turns_too_long} turns "
              f"skipped as longer than the limit on their own, longest line "
              f"{counts.longest_line_tokens} tokens")
    synthetic: list[dict[str, Any]] = []
    provenance: list[dict[str, Any]] = []
    if args.synthesize is not None:
        synthetic, provenance = _synthesize(conn, args)
    out = _open_output(args.output)
    try:
        write_jsonl(lines, out)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.synthesize is not None:
        with args.synthetic_output.open("w", encoding="utf-8") as out_synthetic:
            write_jsonl(synthetic, out_synthetic)
        meta = args.synthetic_output.with_name(args.synthetic_output.name + ".meta.jsonl")
        with meta.open("w", encoding="utf-8") as out_meta:
            write_jsonl(provenance, out_meta)
        _progress(f"wrote {len(synthetic)} synthetic examples to {args.synthetic_output} "
                  f"(provenance: {meta})")
    _progress(f"wrote {len(lines)} fine-tuning lines" + ("" if lines else " (no turn matched)"))
    return 0


def _synthesize(conn: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from otel_chatbot.quality.cluster_store import latest_run_clusters
    from otel_chatbot.quality.synthesize import Synthesizer, cluster_seeds, synthesize

    clusters = latest_run_clusters(conn)
    if not clusters:
        _progress("--synthesize: no stored failure clusters (run `otel-chatbot failures` first); "
                  "no synthetic examples")
        return [], []
    key = os.environ.get("OTEL_CHATBOT_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
    synthesizer = Synthesizer(args.llm_base_url, args.llm_model, key)
    return synthesize(synthesizer, cluster_seeds(conn, clusters), args.synthesize, args.system_prompt,
                      _progress)
