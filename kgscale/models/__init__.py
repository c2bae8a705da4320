"""Backbones: loading, LoRA, pooling, tokenisation."""
