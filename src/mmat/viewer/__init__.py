"""The web viewer of a build output: ``mmat view OUT_DIR`` (stdlib HTTP server on 127.0.0.1)."""
