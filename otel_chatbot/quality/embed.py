"""Sentence embeddings of user messages: offline (WordLlama, TF-IDF) or an OpenAI-compatible endpoint.

Every embedder returns one L2-normalised float32 row per text, so a dot product is a cosine
similarity. Texts that will be compared (this window and the previous one) are embedded in one call,
because TF-IDF learns its vocabulary from what it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Progress = Callable[[str], None]
Vectors = NDArray[np.float32]
EMBEDDER_KINDS = ("wordllama", "tfidf", "endpoint")


class EmbeddingError(RuntimeError):
    """The embeddings could not be computed (endpoint down, wrong model, malformed answer)."""


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """What made the vectors, stored with each clustering run (``failure_cluster_runs.embedder``)."""
        ...

    def embed(self, texts: Sequence[str], progress: Progress) -> Vectors: ...


def normalise_rows(matrix: NDArray[Any]) -> Vectors:
    vectors = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # an all-zero row (no known word) stays zero instead of NaN
    normalised: Vectors = vectors / norms
    return normalised


class WordLlamaEmbedder:
    """WordLlama's static token embeddings, average-pooled (256 dimensions). Its weights and tokenizer
    ship inside the ``wordllama`` wheel: no download, no network, ~1 s to load."""

    name = "wordllama:l2_supercat_256"

    def __init__(self) -> None:
        self._model: Any = None

    def embed(self, texts: Sequence[str], progress: Progress) -> Vectors:
        if self._model is None:
            import wordllama

            # load() looks for the tokenizer under <package>/tokenizer/ while the wheel ships it under
            # <package>/tokenizers/ (the cache layout); pointing the cache at the package finds both.
            package = Path(wordllama.__file__).parent
            self._model = wordllama.WordLlama.load(cache_dir=package, disable_download=True)
        progress(f"embedding {len(texts)} messages with {self.name}")
        return normalise_rows(self._model.embed(list(texts), norm=True, batch_size=256))


class TfidfEmbedder:
    """TF-IDF of words and word pairs, reduced to at most 128 dimensions (LSA) when the vocabulary is
    larger: a fully offline baseline that only sees the words, not their meaning."""

    name = "tfidf"

    def __init__(self, seed: int = 0, dimensions: int = 128) -> None:
        self._seed = seed
        self._dimensions = dimensions

    def embed(self, texts: Sequence[str], progress: Progress) -> Vectors:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        progress(f"embedding {len(texts)} messages with TF-IDF")
        vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True,
                                     token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        try:
            matrix = vectorizer.fit_transform(list(texts))
        except ValueError:  # nothing but stop words and numbers: no vocabulary at all
            return np.zeros((len(texts), 1), dtype=np.float32)
        components = min(self._dimensions, matrix.shape[1] - 1, len(texts) - 1)
        if matrix.shape[1] <= self._dimensions or components < 2:
            return normalise_rows(matrix.toarray())
        reduced = TruncatedSVD(n_components=components, random_state=self._seed).fit_transform(matrix)
        return normalise_rows(reduced)


class EndpointEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint through the ``openai`` client, in batches."""

    def __init__(self, base_url: str, model: str, api_key: str | None, *, batch_size: int = 128,
                 timeout: float = 60.0) -> None:
        import openai

        # Local servers (vLLM, Ollama, llama.cpp) take any key; a hosted one answers 401, reported as such.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unset", timeout=timeout,
                                     max_retries=2)
        self._model = model
        self._batch_size = batch_size
        self.name = f"endpoint:{model}"

    def embed(self, texts: Sequence[str], progress: Progress) -> Vectors:
        import openai

        rows: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start:start + self._batch_size])
            try:
                answer = self._client.embeddings.create(model=self._model, input=batch)
            except openai.OpenAIError as exc:
                raise EmbeddingError(f"embeddings endpoint: {type(exc).__name__}: {exc}") from exc
            data = sorted(answer.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise EmbeddingError(f"embeddings endpoint: asked for {len(batch)} vectors, got {len(data)}")
            rows.extend(list(item.embedding) for item in data)
            progress(f"embedded {len(rows)}/{len(texts)} messages with {self._model}")
        if len({len(row) for row in rows}) > 1:
            raise EmbeddingError("embeddings endpoint: vectors of different lengths in one answer")
        return normalise_rows(np.array(rows, dtype=np.float32).reshape(len(rows), -1))
