"""Failure-clustering quality on a labelled set: cluster purity and adjusted Rand index per embedder.

The set is tests/testdata/failure_intents.tsv (300 problem messages of a support bot in 10 intents,
30 each). Each embedder's vectors go through the same clustering as `otel-chatbot failures`
(k-means, k = 2..--max-clusters chosen by silhouette, --seed). Embedders:

- wordllama: the offline default (weights ship in the wheel);
- tfidf: the offline words-only baseline;
- endpoint: the real openai client against tests/llm_server.py, whose embeddings are a hashed bag of
  words (64 dimensions). It stands in for a hosted model here (no network): its figure measures the
  endpoint path, not what a real embeddings model would score.

With --scale N it also times the offline default on N times the set (each message varied with a
greeting and a closing so the texts differ): seconds to embed and to cluster, the part of a
`failures` run that grows with the window.

    python benchmarks/clusters.py [--max-clusters 15] [--seed 0] [--seeds 1] [--scale 0]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score

from otel_chatbot.quality.cluster import cluster_vectors, purity
from otel_chatbot.quality.embed import EndpointEmbedder, TfidfEmbedder, WordLlamaEmbedder

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(_TESTS))

from llm_server import LLMServer  # noqa: E402
from quality_rows import labelled_messages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-clusters", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds from --seed")
    parser.add_argument("--scale", type=int, default=0, help="also time the default on N times the set")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the HTTP client logs every request at INFO

    pairs = labelled_messages()
    truth = [intent for intent, _ in pairs]
    texts = [message for _, message in pairs]
    print(f"labelled set: {len(texts)} messages, {len(set(truth))} intents; "
          f"k-means, k = 2..{args.max_clusters} by silhouette")
    print(f"{'embedder':<28} {'seed':>4} {'k':>3} {'silhouette':>10} {'purity':>7} {'ARI':>6} {'embed s':>8} "
          f"{'cluster s':>9}")
    with LLMServer() as server:
        embedders = [WordLlamaEmbedder(), TfidfEmbedder(seed=args.seed),
                     EndpointEmbedder(server.base_url, "llm-server-hashed-bow", None)]
        for embedder in embedders:
            started = time.perf_counter()
            vectors = embedder.embed(texts, lambda _: None)
            embedded = time.perf_counter() - started
            for seed in range(args.seed, args.seed + args.seeds):
                started = time.perf_counter()
                clustering = cluster_vectors(vectors, max_clusters=args.max_clusters, seed=seed)
                clustered = time.perf_counter() - started
                labels = [int(label) for label in clustering.labels]
                silhouette = f"{clustering.silhouette:.3f}" if clustering.silhouette is not None else "-"
                print(f"{embedder.name:<28} {seed:>4} {clustering.k:>3} {silhouette:>10} "
                      f"{purity(labels, truth):>7.3f} {adjusted_rand_score(truth, labels):>6.3f} "
                      f"{embedded:>8.2f} {clustered:>9.2f}")

    if args.scale:
        _time_scaled(texts, truth, args.scale, args.max_clusters, args.seed)


_GREETINGS = ("", "hi, ", "hello. ", "excuse me, ", "urgent: ", "hey ", "good morning, ", "sorry but ")
_CLOSINGS = ("", " thanks", " please", "!!", " asap", " thank you very much", " ??", " cheers")


def _time_scaled(texts: list[str], truth: list[str], scale: int, max_clusters: int, seed: int) -> None:
    variants = list(itertools.product(_GREETINGS, _CLOSINGS))[:scale]
    if len(variants) < scale:
        raise SystemExit(f"--scale: at most {len(_GREETINGS) * len(_CLOSINGS)}")
    big = [f"{greeting}{text}{closing}" for greeting, closing in variants for text in texts]
    big_truth = truth * scale
    embedder = WordLlamaEmbedder()
    embedder.embed(texts[:1], lambda _: None)  # load the model outside the timing
    started = time.perf_counter()
    vectors = embedder.embed(big, lambda _: None)
    embedded = time.perf_counter() - started
    started = time.perf_counter()
    clustering = cluster_vectors(vectors, max_clusters=max_clusters, seed=seed)
    clustered = time.perf_counter() - started
    labels = [int(label) for label in clustering.labels]
    print(f"scaled x{scale}: {len(big)} messages, k={clustering.k}, purity {purity(labels, big_truth):.3f}; "
          f"embed {embedded:.2f} s ({len(big) / embedded:.0f} messages/s), cluster {clustered:.2f} s")


if __name__ == "__main__":
    main()
