"""Evaluation: filtered KG completion ranking and QA accuracy."""
