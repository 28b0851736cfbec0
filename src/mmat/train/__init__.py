"""Training: LoRA fine-tuning with the Frobenius penalty on the LoRA update (SPEC §4).

- :mod:`mmat.train.penalty`: ``sum_i ||Delta W_i||_F^2`` over a PEFT model's LoRA adapters (Gram form, fp32).
- :mod:`mmat.train.trainer`: :class:`~mmat.train.trainer.FrobeniusPenaltyTrainer` and ``run_training``.
- :mod:`mmat.train.data`: export rows -> token ids with assistant-only labels.
- :mod:`mmat.train.collators`: batch collation per model family (``model_type``).
- :mod:`mmat.train.swift_plugin`: the ms-swift 4.x loss plugin; :mod:`mmat.train.swift_backend` builds
  the ``swift sft`` command.

Importing this package imports nothing heavy; torch, transformers and peft load with the submodules.
"""
