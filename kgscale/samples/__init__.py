"""Training samples: text rows built from a snapshot or rationales, one
builder an objective, and their tokenisation as Ray Data stages."""
