"""The ms-swift loss plugin file lives here alone, because ms-swift puts its folder on ``sys.path``.

Pass ``mmat_frobenius_plugin.py`` to ``swift sft --external_plugins``; see
:func:`mmat.train.swift_backend.plugin_path`.
"""
