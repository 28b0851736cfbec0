"""Evaluation: the paper's benchmarks and Dyn-VQA, baseline vs ORR vs RR, with latency.

- :mod:`mmat.eval.benchmarks` names the benchmarks and reads their files into :class:`EvalItem`;
- :mod:`mmat.eval.scorers` extracts and scores answers (rules, then an optional judge);
- :mod:`mmat.eval.runner` runs the agent concurrently and resumably and writes scores and latency;
- :mod:`mmat.eval.report` builds the comparison table and chart;
- :mod:`mmat.eval.vlmevalkit` wraps the agent as a VLMEvalKit model and exports predictions.

The command line is ``mmat eval`` (:mod:`mmat.eval.cli`).
"""

from mmat.eval.items import EvalItem

__all__ = ["EvalItem"]
