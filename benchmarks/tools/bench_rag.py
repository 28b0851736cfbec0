"""RAG hit@3 and latency over the offline Wikipedia summaries (10,033 articles).

Two query sets, both with a known target article:
- ``known_item``: 200 articles drawn with seed 0; the query is the article's second sentence with the
  title's words removed (lexical overlap remains: easy for BM25).
- ``questions``: 25 hand-written natural questions whose answer is in one article (paraphrased).
A query scores a hit when the target article is among the top 3. Dense and hybrid use an index built
once with ``build_index`` (its build time is reported).

    .venv/bin/python benchmarks/tools/bench_rag.py [--no-dense]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from mmat.config import SearchConfig
from mmat.tools.search import create_search_backend, wiki_offline_corpus
from mmat.tools.search_index import build_index

QUESTIONS = [
    ("Who developed the first compiler and worked on COBOL?", "Grace Hopper"),
    ("Which city is the capital of Japan?", "Tokyo"),
    ("What is the highest mountain on Earth?", "Mount Everest"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("Which planet is known as the red planet?", "Mars"),
    ("Who proposed the theory of general relativity?", "Albert Einstein"),
    ("What is the largest ocean on Earth?", "Pacific Ocean"),
    ("Who wrote the play Hamlet?", "William Shakespeare"),
    ("Which element has the chemical symbol Fe?", "Iron"),
    ("What is the longest river in Africa?", "Nile"),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong"),
    ("Which organ pumps blood through the human body?", "Heart"),
    ("Who formulated the laws of motion and universal gravitation?", "Isaac Newton"),
    ("What is the largest desert in Africa?", "Sahara"),
    ("Which language has the most native speakers in Brazil?", "Portuguese language"),
    ("Who discovered penicillin?", "Alexander Fleming"),
    ("What gas do plants absorb for photosynthesis?", "Photosynthesis"),
    ("Which composer wrote the Ninth Symphony with Ode to Joy?", "Ludwig van Beethoven"),
    ("What is the currency of Japan?", "Japanese yen"),
    ("Who was the first President of the United States?", "George Washington"),
    ("Who proposed evolution by natural selection?", "Charles Darwin"),
    ("Which scientist won Nobel prizes for research on radioactivity?", "Marie Curie"),
    ("Which molecule carries genetic instructions in living organisms?", "DNA"),
    ("Who painted The Starry Night?", "Vincent van Gogh"),
    ("Which river flows through the largest rainforest in South America?", "Amazon River"),
    ("Which city hosts the Colosseum?", "Rome"),
    ("Who developed the polio vaccine?", "Jonas Salk"),
    ("Which famous tower in Paris was built for the 1889 World's Fair?", "Eiffel Tower"),
    ("What is the hardest natural material?", "Diamond"),
]


def known_item_queries(docs, n: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for doc in rng.sample(docs, len(docs)):
        sentences = re.split(r"(?<=[.!?])\s+", doc.text)
        if len(sentences) < 3:
            continue
        title_words = {w.lower() for w in re.findall(r"\w+", doc.title)}
        query = " ".join(w for w in sentences[1].split() if re.sub(r"\W", "", w).lower() not in title_words)
        if len(query.split()) >= 5:
            out.append((query, doc.title))
        if len(out) == n:
            break
    return out


def evaluate(backend, queries: list[tuple[str, str]]) -> dict[str, float]:
    hits = 0
    times = []
    for query, title in queries:
        started = time.perf_counter()
        found = [h.title for h in backend.search(query, 3)]
        times.append(time.perf_counter() - started)
        hits += title in found
    return {
        "queries": len(queries),
        "hit@3": round(hits / len(queries), 3),
        "latency_ms_median": round(1000 * statistics.median(times), 2),
        "latency_ms_p95": round(1000 * sorted(times)[int(0.95 * (len(times) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-dense", action="store_true")
    opts = parser.parse_args()
    docs = wiki_offline_corpus()
    titles = {d.title for d in docs}
    missing = [t for _, t in QUESTIONS if t not in titles]
    questions = [(q, t) for q, t in QUESTIONS if t in titles]
    sets = {"known_item": known_item_queries(docs), "questions": questions}
    report: dict[str, object] = {"documents": len(docs), "questions_without_article": missing}
    with tempfile.TemporaryDirectory() as tmp:
        kinds = ["bm25"] if opts.no_dense else ["hybrid"]
        manifest = build_index(docs, Path(tmp) / "wiki", backends=kinds, corpus="wiki:en-us")
        report["index_build_s"] = manifest["build_s"]
        for name in ["bm25"] + ([] if opts.no_dense else ["dense", "hybrid"]):
            backend = create_search_backend(SearchConfig(backend=name, index=str(Path(tmp) / "wiki")))
            started = time.perf_counter()
            backend.search("warm up", 3)
            load_s = time.perf_counter() - started
            report[name] = {"load_s": round(load_s, 2), **{k: evaluate(backend, q) for k, q in sets.items()}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
