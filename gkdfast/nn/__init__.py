"""PyG-like layers and models built on gkdfast ops."""
