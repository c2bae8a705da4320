"""Ray Serve application: OpenAI-compatible embeddings and generation, and
KG completion over an entity index. See docs/serving.md."""
