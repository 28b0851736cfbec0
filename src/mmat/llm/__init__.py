"""Teacher and student model clients: OpenAI-compatible HTTP, embedded local model, batch API, mock server."""
