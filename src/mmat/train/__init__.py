"""Training: LoRA fine-tuning with the Frobenius penalty on the LoRA update (SPEC §4).

``L = L_data + lambda * sum_i ||Delta W_i||_F^2`` with ``Delta W = s * B @ A`` over every active LoRA
adapter, computed through r x r Gram matrices in fp32.

- :mod:`mmat.train.penalty`: the penalty (``FrobeniusPenalty``, ``lora_frobenius_penalty``); refuses
  DoRA and other LoRA variants.
- :mod:`mmat.train.trainer`: ``FrobeniusPenaltyTrainer`` (a transformers ``Trainer``) and
  ``run_training``, what ``mmat train --backend peft`` runs.
- :mod:`mmat.train.data`: export rows -> token ids with labels on assistant tokens only.
- :mod:`mmat.train.processors`: torchvision-free processors for Qwen2-VL/2.5-VL and InternVL.
- :mod:`mmat.train.collators`: batch collation per model family (``config.model_type``).
- :mod:`mmat.train.swift_backend` and ``swift_plugin/``: the ms-swift 4.x loss plugin and the
  ``swift sft`` command (``mmat train --backend swift``).
- :mod:`mmat.train.tiny`: tiny random LLaVA, Qwen2-VL, InternVL, Mllama and Idefics3 checkpoints built
  offline, for tests and demos.

Importing this package imports nothing heavy; torch, transformers and peft load with the submodules.
"""
